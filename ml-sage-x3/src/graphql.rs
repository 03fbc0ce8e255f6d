//! [`SageX3GraphqlSource`]: one GraphQL node, read with ml-core's tie-proof
//! [`WatermarkCursor`] over Relay paging.
//!
//! Request: `POST <graphql url>` with the folder in the endpoint header
//! (`x-xtrem-endpoint: SEED` by default) and `{"query": …, "variables": {"filter",
//! "first", "after", "orderBy"}}`:
//!
//! ```text
//! query($filter: String, $first: Int, $after: String, $orderBy: String) {
//!   x3Purchasing { purchaseOrder { query(filter: $filter, first: $first, after: $after,
//!       orderBy: $orderBy) {
//!     edges { cursor node { id _updateStamp … } } pageInfo { endCursor hasNextPage } } } } }
//! ```
//!
//! `filter` is the Mongo-like string X3 takes (`{_updateStamp:{_gte:'2026-…Z'}}`, with
//! `_lte` for a sweep window), `orderBy` `{_updateStamp:1,id:1}`: Relay cursors follow that
//! order, so a row updated during a read moves behind the cursor and is read later in the
//! scan or the next cycle. The cursor's position carries the filter with the Relay cursor
//! (a cursor is only valid for the query that produced it).
//!
//! `healthcheck()` introspects the schema along the configured root path and reports every
//! configured field the node lacks. Polling reads around an optional field the server's
//! validation names (left out of later queries, warned once); a key or the stamp it lacks
//! is a configuration error. Data beside `errors` (a field refused, say, for lack of
//! authorization) is kept: those fields are null.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use jiff::Timestamp;
use ml_core::cursor::{Cursor as _, PageRow, Position, ReadPlan, WatermarkCursor, fold_page};
use ml_core::error::Result;
use ml_core::http::Request;
use ml_core::source::Page;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::error::SageX3Error;
use crate::model::map_item;
use crate::source::Common;

/// Reads one GraphQL node incrementally (see the module docs).
pub struct SageX3GraphqlSource {
    pub(crate) common: Common,
    url: String,
    header: HeaderName,
    cursor: WatermarkCursor,
    /// Optional fields the node does not have on this instance (the server named them in
    /// a validation error), as (part, path prefix): left out of every later query, with
    /// every path under them (`orderFromSupplier` drops `orderFromSupplier.code`).
    dropped: std::sync::Mutex<std::collections::BTreeSet<(Part, String)>>,
}

/// Where a configured path sits in the query: on the node, or in the lines' node (the
/// same name, `description`, may be in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Header,
    Lines,
}

/// What a validation error names, and the configured paths it may be: the path up to the
/// named segment, optional or not.
#[derive(Debug)]
struct Missing {
    name: String,
    candidates: Vec<(Part, String, bool)>,
}

/// A refused name, the step taken for it (which candidate was left out, or all), and its
/// candidates.
type Attempt = (String, usize, Vec<(Part, String)>);

/// Whether `path` is `prefix` or lies under it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The names a GraphQL error message quotes (`Cannot query field "x" on type "T".`).
fn quoted(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for q in ['"', '\''] {
        // Between the 1st and 2nd quote, the 3rd and 4th, ...: the odd parts.
        let parts: Vec<&str> = message.split(q).collect();
        if parts.len() >= 3 {
            out.extend(
                parts[..parts.len() - 1]
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .filter(|s| !s.is_empty()),
            );
        }
    }
    out
}

impl fmt::Debug for SageX3GraphqlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SageX3GraphqlSource")
            .field("system", &self.common.system)
            .field("url", &self.url)
            .field("auth", &self.common.auth)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// A selection tree built from dotted field paths.
#[derive(Default)]
struct Tree(BTreeMap<String, Tree>);

impl Tree {
    fn insert(&mut self, path: &str) {
        let mut node = self;
        for part in path.split('.') {
            node = node.0.entry(part.to_owned()).or_default();
        }
    }

    fn render(&self, out: &mut String) {
        for (i, (name, child)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(name);
            if !child.0.is_empty() {
                out.push_str(" { ");
                child.render(out);
                out.push_str(" }");
            }
        }
    }
}

/// What the position's token holds: the filter a Relay cursor belongs to, and the cursor.
#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hi: Option<Timestamp>,
    c: String,
}

/// A GraphQL answer, read.
enum Checked {
    /// Data (perhaps beside errors on some fields).
    Data(serde_json::Value),
    /// No data: the errors name a field of ours.
    Lacks(Missing),
}

fn literal(t: Timestamp) -> String {
    format!("'{t}'")
}

/// `{a:{b:1}}` from `a.b`, several joined in order.
fn order_by(paths: &[&str]) -> String {
    let parts: Vec<String> = paths
        .iter()
        .map(|p| {
            let segs: Vec<&str> = p.split('.').collect();
            let mut s = "1".to_owned();
            for seg in segs.iter().rev() {
                s = format!("{{{seg}:{s}}}");
            }
            // Drop the outer braces: the parts are joined into one object.
            s[1..s.len() - 1].to_owned()
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl SageX3GraphqlSource {
    pub(crate) fn new(
        common: Common,
        url: String,
        header: HeaderName,
        cursor: WatermarkCursor,
    ) -> Self {
        Self {
            common,
            url,
            header,
            cursor,
            dropped: std::sync::Mutex::default(),
        }
    }

    fn dropped(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<(Part, String)>> {
        self.dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn selection(&self) -> String {
        let g = &self.common.spec.graphql;
        let dropped = self.dropped().clone();
        let gone = |part: Part, path: &str| {
            dropped
                .iter()
                .any(|(p, prefix)| *p == part && under(path, prefix))
        };
        let mut tree = Tree::default();
        for k in &g.keys {
            tree.insert(k);
        }
        tree.insert(&g.stamp);
        for n in g.fields.names() {
            if g.fields.lines.as_ref().is_some_and(|l| l.array == n) || gone(Part::Header, n) {
                continue;
            }
            tree.insert(n);
        }
        let mut out = String::new();
        tree.render(&mut out);
        if let Some(l) = g
            .fields
            .lines
            .as_ref()
            .filter(|l| !gone(Part::Header, &l.array))
        {
            let mut lt = Tree::default();
            for p in [&l.number, &l.account, &l.amount, &l.sense, &l.description]
                .into_iter()
                .flatten()
                .filter(|p| !gone(Part::Lines, p))
            {
                lt.insert(p);
            }
            let mut inner = String::new();
            lt.render(&mut inner);
            let _ = write!(
                out,
                " {} {{ query {{ edges {{ node {{ {inner} }} }} }} }}",
                l.array
            );
        }
        out
    }

    /// The GraphQL document of a page read.
    pub fn document(&self) -> String {
        let g = &self.common.spec.graphql;
        let mut open = String::new();
        let mut close = String::new();
        for seg in &g.root {
            let _ = write!(open, "{seg} {{ ");
            close.push_str(" }");
        }
        format!(
            "query($filter: String, $first: Int, $after: String, $orderBy: String) {{ {open}query(filter: $filter, first: $first, after: $after, orderBy: $orderBy) {{ edges {{ cursor node {{ {} }} }} pageInfo {{ endCursor hasNextPage }} }}{close} }}",
            self.selection()
        )
    }

    fn filter(&self, since: Option<Timestamp>, hi: Option<Timestamp>) -> Option<String> {
        let stamp = &self.common.spec.graphql.stamp;
        let mut ops = Vec::new();
        if let Some(s) = since {
            ops.push(format!("_gte:{}", literal(s)));
        }
        if let Some(h) = hi {
            ops.push(format!("_lte:{}", literal(h)));
        }
        (!ops.is_empty()).then(|| format!("{{{stamp}:{{{}}}}}", ops.join(",")))
    }

    /// Posts a GraphQL body (with the retry policy); the answer's text.
    async fn send_body(&self, body: &serde_json::Value) -> Result<String> {
        let folder = HeaderValue::from_str(&self.common.folder)
            .map_err(|_| SageX3Error::config("SAGE_X3_FOLDER", "not a header value"))?;
        self.common
            .send(|| {
                Ok(Request::post(&self.url)?
                    .json(body)?
                    .header(self.header.clone(), folder.clone())
                    // A read: sending it again is harmless.
                    .idempotent(true))
            })
            .await
    }

    async fn post(&self, body: &serde_json::Value) -> Result<serde_json::Value> {
        let text = self.send_body(body).await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.common.decode_error(format!("not JSON: {e}")))?;
        match self.checked(v)? {
            Checked::Data(v) => Ok(v),
            Checked::Lacks(m) => Err(SageX3Error::UnknownProperty {
                system: self.common.system.clone(),
                api: "GraphQL node",
                property: m.name,
                hint: "SAGE_X3_FIELDS".into(),
            }
            .into()),
        }
    }

    /// A page read: an optional field the node lacks on this instance is left out (once
    /// warned) and the page read again; a key or the stamp it lacks is a configuration
    /// error naming it. A name several configured paths share (`description` on the node
    /// and on its lines) is left out of one of them at a time, then of all.
    async fn post_page(&self, variables: &serde_json::Value) -> Result<serde_json::Value> {
        // The name the last read was refused for, the step taken for it, its candidates.
        let mut tried: Option<Attempt> = None;
        for _ in 0..32 {
            let body = serde_json::json!({"query": self.document(), "variables": variables});
            let text = self.send_body(&body).await?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| self.common.decode_error(format!("not JSON: {e}")))?;
            let m = match self.checked(v)? {
                Checked::Data(v) => return Ok(v),
                Checked::Lacks(m) => m,
            };
            let unknown = |name: String| -> ml_core::Error {
                SageX3Error::UnknownProperty {
                    system: self.common.system.clone(),
                    api: "GraphQL node",
                    property: name,
                    hint: "SAGE_X3_FIELDS".into(),
                }
                .into()
            };
            let optional: Vec<(Part, String)> = m
                .candidates
                .iter()
                .filter(|(_, _, required)| !required)
                .map(|(part, prefix, _)| (*part, prefix.clone()))
                .filter(|c| !self.dropped().contains(c))
                .collect();
            let step = match &tried {
                Some((name, step, previous)) if *name == m.name => {
                    // The one left out did not help: put it back before the next.
                    if let Some(c) = previous.get(*step) {
                        self.dropped().remove(c);
                    }
                    step + 1
                }
                _ => 0,
            };
            let candidates = match &tried {
                Some((name, _, previous)) if *name == m.name => previous.clone(),
                _ => optional,
            };
            if m.candidates.iter().any(|(_, _, required)| *required) && candidates.is_empty() {
                return Err(unknown(m.name));
            }
            if let Some(c) = candidates.get(step) {
                self.dropped().insert(c.clone());
                tracing::warn!(
                    source = %self.common.system,
                    field = %c.1,
                    "the GraphQL node has no such field on this instance: read without it"
                );
            } else if step == candidates.len() && candidates.len() > 1 {
                for c in &candidates {
                    self.dropped().insert(c.clone());
                }
                tracing::warn!(
                    source = %self.common.system,
                    field = %m.name,
                    "the GraphQL node has no such field on this instance: read without it"
                );
            } else {
                return Err(unknown(m.name));
            }
            tried = Some((m.name, step, candidates));
        }
        Err(self
            .common
            .decode_error("the GraphQL node kept refusing fields; check SAGE_X3_FIELDS")
            .into())
    }

    /// Reads GraphQL `errors`: data beside errors is kept (the fields in error are
    /// null); without data, a field of ours the errors name is what the node lacks.
    fn checked(&self, v: serde_json::Value) -> Result<Checked> {
        if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            let joined = messages.join("; ");
            if !v["data"].is_null() {
                tracing::warn!(source = %self.common.system, "GraphQL errors beside data: {joined}");
                return Ok(Checked::Data(v));
            }
            let g = &self.common.spec.graphql;
            let required: Vec<&str> = g
                .keys
                .iter()
                .map(String::as_str)
                .chain([g.stamp.as_str()])
                .collect();
            let mut paths: Vec<(Part, &str)> =
                required.iter().map(|p| (Part::Header, *p)).collect();
            paths.extend(g.fields.names().into_iter().map(|p| (Part::Header, p)));
            if let Some(l) = &g.fields.lines {
                paths.extend(
                    [&l.number, &l.account, &l.amount, &l.sense, &l.description]
                        .into_iter()
                        .flatten()
                        .map(|p| (Part::Lines, p.as_str())),
                );
            }
            for name in messages.iter().flat_map(|m| quoted(m)) {
                let mut candidates: Vec<(Part, String, bool)> = Vec::new();
                for (part, path) in &paths {
                    let segments: Vec<&str> = path.split('.').collect();
                    let Some(i) = segments.iter().position(|s| *s == name) else {
                        continue;
                    };
                    let prefix = segments[..=i].join(".");
                    let is_required =
                        *part == Part::Header && required.iter().any(|r| under(r, &prefix));
                    if !candidates.iter().any(|(p, x, _)| p == part && *x == prefix) {
                        candidates.push((*part, prefix, is_required));
                    }
                }
                if !candidates.is_empty() {
                    return Ok(Checked::Lacks(Missing {
                        name: name.to_owned(),
                        candidates,
                    }));
                }
            }
            return Err(SageX3Error::Http {
                system: self.common.system.clone(),
                status: 200,
                class: ml_core::error::ErrorClass::Permanent,
                message: joined,
            }
            .into());
        }
        Ok(Checked::Data(v))
    }

    pub(crate) async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let plan: ReadPlan = self.cursor.plan(from)?;
        if plan.offset > 0 || plan.after_key.is_some() {
            return Err(ml_core::Error::InvalidPosition(
                "a GraphQL position continues by Relay cursor only".into(),
            ));
        }
        let (since, hi, after) = if let Some(t) = &plan.token {
            let tok: Token = serde_json::from_str(t)
                .map_err(|e| ml_core::Error::InvalidPosition(format!("bad Relay token: {e}")))?;
            (tok.s, tok.hi, Some(tok.c))
        } else {
            let w = plan.within.first();
            let since = match (plan.since, w.map(|w| w.lo)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            (since, w.map(|w| w.hi), None)
        };
        let g = &self.common.spec.graphql;
        let mut order: Vec<&str> = vec![g.stamp.as_str()];
        order.extend(g.keys.iter().map(String::as_str));
        let variables = serde_json::json!({
            "filter": self.filter(since, hi),
            "first": self.common.page_size,
            "after": after,
            "orderBy": order_by(&order),
        });
        let v = self.post_page(&variables).await?;
        let mut conn = &v["data"];
        for seg in &g.root {
            conn = &conn[seg];
        }
        let conn = &conn["query"];
        let edges = conn["edges"].as_array().ok_or_else(|| {
            self.common
                .decode_error("no edges at the configured root (SAGE_X3_GRAPHQL_ROOT)")
        })?;
        let has_next = conn["pageInfo"]["hasNextPage"].as_bool().unwrap_or(false);
        let end = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        let token = match (has_next, end) {
            (true, Some(c)) => Some(
                serde_json::to_string(&Token { s: since, hi, c })
                    .map_err(|e| self.common.decode_error(e.to_string()))?,
            ),
            (true, None) => {
                return Err(self
                    .common
                    .decode_error("hasNextPage without an endCursor")
                    .into());
            }
            (false, _) => None,
        };
        let mapping = self.common.mapping(&g.keys, &g.stamp, &g.fields);
        let rows: Vec<PageRow> = edges
            .iter()
            .map(|e| {
                let raw = RawValue::from_string(e["node"].to_string())
                    .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default());
                map_item(&mapping, &raw)
            })
            .collect();
        fold_page(
            &self.cursor,
            from,
            &plan,
            rows,
            has_next,
            token,
            self.common.clock.now(),
        )
    }

    async fn type_fields(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let body = serde_json::json!({
            "query": "query($n: String!) { __type(name: $n) { fields { name type { name kind ofType { name kind ofType { name kind ofType { name kind } } } } } } }",
            "variables": {"n": name},
        });
        let v = self.post(&body).await?;
        let mut out = BTreeMap::new();
        for f in v["data"]["__type"]["fields"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(fname) = f["name"].as_str() else {
                continue;
            };
            // Unwrap NON_NULL / LIST to the named type.
            let mut t = &f["type"];
            while t["name"].is_null() && !t["ofType"].is_null() {
                t = &t["ofType"];
            }
            out.insert(
                fname.to_owned(),
                t["name"].as_str().unwrap_or_default().to_owned(),
            );
        }
        Ok(out)
    }

    /// Follows `path` from type `start`: the named type at its end, or the first missing
    /// segment.
    async fn follow(
        &self,
        start: &str,
        path: &[&str],
    ) -> Result<std::result::Result<String, String>> {
        let mut ty = start.to_owned();
        for seg in path {
            let fields = self.type_fields(&ty).await?;
            match fields.get(*seg) {
                Some(t) => ty.clone_from(t),
                None => return Ok(Err((*seg).to_owned())),
            }
        }
        Ok(Ok(ty))
    }

    pub(crate) async fn healthcheck(&self) -> Result<()> {
        let g = &self.common.spec.graphql;
        let v = self
            .post(&serde_json::json!({"query": "{ __schema { queryType { name } } }"}))
            .await?;
        let root = v["data"]["__schema"]["queryType"]["name"]
            .as_str()
            .ok_or_else(|| self.common.decode_error("introspection gave no query type"))?
            .to_owned();
        let mut path: Vec<&str> = g.root.iter().map(String::as_str).collect();
        path.extend(["query", "edges", "node"]);
        let node = match self.follow(&root, &path).await? {
            Ok(t) => t,
            Err(seg) => {
                return Err(SageX3Error::config(
                    "SAGE_X3_GRAPHQL_ROOT",
                    format!(
                        "{}: the schema has no `{seg}` along {} (introspect and configure the root)",
                        self.common.system,
                        path.join(".")
                    ),
                )
                .into());
            }
        };
        let mut wanted: Vec<&str> = g.keys.iter().map(String::as_str).collect();
        wanted.push(&g.stamp);
        wanted.extend(g.fields.names());
        let mut missing = Vec::new();
        for w in wanted {
            let segs: Vec<&str> = w.split('.').collect();
            if self.follow(&node, &segs).await?.is_err() {
                missing.push(w);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(SageX3Error::config(
            "SAGE_X3_FIELDS",
            format!(
                "{}: the GraphQL node {node} lacks {} (set SAGE_X3_FIELDS / SAGE_X3_KEY / SAGE_X3_STAMP to this release's names)",
                self.common.system,
                missing.join(", ")
            ),
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_nests_paths() {
        assert_eq!(order_by(&["_updateStamp", "id"]), "{_updateStamp:1,id:1}");
        assert_eq!(order_by(&["a", "type.code"]), "{a:1,type:{code:1}}");
    }
}
