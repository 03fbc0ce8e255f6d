//! `GET` on a collection: `q`, `orderBy`, paging, `fields` / `expand` projection and the
//! envelope.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;

use super::query::{self, Clause, Expr};
use super::{MAX_LIMIT, Row, Shared, SortKey, Synthetic, adf_error, invoice_json, refusal};

struct Params {
    filter: Option<Expr>,
    order: Vec<(String, bool)>,
    limit: usize,
    offset: usize,
    only_data: bool,
    total: bool,
    fields: Shape,
    /// The resource's attributes this pod lacks: never served.
    lacking: BTreeSet<String>,
}

fn params(q: &HashMap<String, String>, headers: &HeaderMap) -> std::result::Result<Params, String> {
    let framework: u32 = headers
        .get("REST-Framework-Version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    let filter = match q.get("q").map(String::as_str) {
        None | Some("") => None,
        Some(text) if framework >= 2 => Some(query::parse_v2(text)?),
        Some(text) => Some(query::parse_v1(text)?),
    };
    let order = q
        .get("orderBy")
        .map(|o| query::parse_order(o))
        .transpose()?
        .unwrap_or_default();
    let num = |name: &str, default: usize| -> std::result::Result<usize, String> {
        q.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{name} `{v}` is not a non-negative integer"))
        })
    };
    let limit = num("limit", 25)?.clamp(1, MAX_LIMIT);
    let offset = num("offset", 0)?;
    let flag = |name: &str| q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let fields = Shape::parse(q, headers)?;
    Ok(Params {
        filter,
        order,
        limit,
        offset,
        only_data: flag("onlyData"),
        total: flag("totalResults"),
        fields,
        lacking: BTreeSet::new(),
    })
}

/// The 400 a pod answers when `fields`, `q` or `orderBy` names an attribute its release
/// does not have (the wording is the sandbox's own: Oracle's is unconfirmed).
fn unknown_attribute(resource: &str, lacking: &BTreeSet<String>, p: &Params) -> Option<Response> {
    if lacking.is_empty() {
        return None;
    }
    let named = |param: &str, attrs: &mut dyn Iterator<Item = &str>| {
        let bad: Vec<&str> = attrs.filter(|a| lacking.contains(*a)).collect();
        (!bad.is_empty()).then(|| {
            adf_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "URL parameter {param}: attribute {} is not valid for resource {resource}",
                    bad.join(", ")
                ),
            )
        })
    };
    // ADF echoes the whole parameter value before naming the attribute (every attribute
    // asked for appears in the text, not only the one it lacks).
    let echoed: Vec<&str> = p
        .fields
        .header
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if let Some(bad) = echoed.iter().find(|a| lacking.contains(**a)) {
        return Some(adf_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "URL request parameter fields with value {} is not valid. Attribute {bad} is \
                 not found in resource {resource}.",
                echoed.join(",")
            ),
        ));
    }
    let header = p.fields.header.iter().flatten().map(String::as_str);
    let filter = p
        .filter
        .iter()
        .flat_map(Expr::clauses)
        .map(|c| c.attr.as_str());
    let order = p.order.iter().map(|(a, _)| a.as_str());
    // A child attribute the release lacks, named as `<accessor path>:<attribute>`.
    let child: Vec<(String, &str)> = p
        .fields
        .children
        .iter()
        .flat_map(|(path, attrs)| {
            attrs
                .iter()
                .map(move |a| (format!("{path}:{a}"), a.as_str()))
        })
        .collect();
    if let Some((_, a)) = child.iter().find(|(q, _)| lacking.contains(q)) {
        return Some(adf_error(
            StatusCode::BAD_REQUEST,
            &format!("URL parameter fields: attribute {a} is not valid for resource {resource}"),
        ));
    }
    named("fields", &mut { header })
        .or_else(|| named("q", &mut { filter }))
        .or_else(|| named("orderBy", &mut { order }))
}

fn row_ts(row: &Row, attr: &str) -> Option<Timestamp> {
    match attr {
        "LastUpdateDate" => Some(row.updated),
        "CreationDate" => Some(row.created),
        _ => None,
    }
}

fn ts_clause(t: Timestamp, c: &Clause) -> std::result::Result<bool, String> {
    let wanted = query::parse_ts(&c.value)
        .ok_or_else(|| format!("`{}` is not a valid date-time for {}", c.value, c.attr))?;
    Ok(query::cmp_ts(t, c.op, wanted))
}

fn row_matches(row: &Row, filter: &Expr) -> std::result::Result<bool, String> {
    let mut attrs: Option<BTreeMap<String, serde_json::Value>> = None;
    filter.eval(&mut |c: &Clause| {
        if let Some(t) = row_ts(row, &c.attr) {
            return ts_clause(t, c);
        }
        if attrs.is_none() {
            attrs = Some(serde_json::from_str(row.raw.get()).map_err(|e| e.to_string())?);
        }
        Ok(attrs
            .as_ref()
            .and_then(|m| m.get(&c.attr))
            .is_some_and(|v| query::cmp_value(v, c.op, &c.value)))
    })
}

/// Whether synthetic row `i` (key `i + 1`, stamped `s.at(i)`) passes the filter.
fn synthetic_matches(
    s: Synthetic,
    key_attr: &str,
    i: u64,
    filter: &Expr,
) -> std::result::Result<bool, String> {
    filter.eval(&mut |c: &Clause| match c.attr.as_str() {
        "LastUpdateDate" | "CreationDate" => ts_clause(s.at(i), c),
        a if a == key_attr => Ok(query::cmp_value(&serde_json::json!(i + 1), c.op, &c.value)),
        a => Err(format!("synthetic mode cannot filter on `{a}`")),
    })
}

/// Which parts of an item are served: `fields` (header attributes and child groups) or,
/// without it, `expand`; and the REST framework version (the shape of child collections).
#[derive(Debug, Default)]
struct Shape {
    /// Whether `fields` was given.
    projected: bool,
    /// The header attributes named in `fields` (`None`: all).
    header: Option<Vec<String>>,
    /// The child groups of `fields`: accessor path (`invoiceLines.invoiceDistributions`)
    /// and attributes.
    children: Vec<(String, Vec<String>)>,
    /// The `expand` paths (only without `fields`); `all` expands every child.
    expand: Vec<String>,
    /// `REST-Framework-Version` (1 when absent).
    framework: u32,
}

fn attr_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

impl Shape {
    fn parse(
        q: &HashMap<String, String>,
        headers: &HeaderMap,
    ) -> std::result::Result<Self, String> {
        let mut shape = Self {
            framework: headers
                .get("REST-Framework-Version")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1),
            ..Self::default()
        };
        if let Some(f) = q.get("fields") {
            shape.projected = true;
            for group in f.split(';').map(str::trim).filter(|g| !g.is_empty()) {
                match group.split_once(':') {
                    Some((path, attrs)) => {
                        let path = path.trim();
                        if path.is_empty() || path.split('.').any(|seg| !query_name(seg)) {
                            return Err(format!("fields: `{path}` is not a child accessor"));
                        }
                        shape.children.push((path.to_owned(), attr_list(attrs)));
                    }
                    None => shape
                        .header
                        .get_or_insert_with(Vec::new)
                        .extend(attr_list(group)),
                }
            }
        } else if let Some(e) = q.get("expand") {
            shape.expand = attr_list(e);
        }
        Ok(shape)
    }

    /// Whether the child at `path` is served, and with which attributes.
    fn child(&self, path: &str) -> Served<'_> {
        let nested = |p: &str| {
            p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'.'
        };
        let served = |yes: bool| if yes { Served::All } else { Served::No };
        if self.projected {
            if let Some((_, attrs)) = self.children.iter().find(|(p, _)| p == path) {
                return Served::Only(attrs);
            }
            // A nested accessor implies its parent.
            return served(self.children.iter().any(|(p, _)| nested(p)));
        }
        served(
            self.expand
                .iter()
                .any(|p| p == "all" || p == path || nested(p)),
        )
    }
}

/// Whether a child collection is served, and with which attributes.
enum Served<'a> {
    /// Omitted.
    No,
    /// With every attribute.
    All,
    /// With these attributes.
    Only(&'a [String]),
}

/// An accessor path segment: letters, digits, `_`.
fn query_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a raw attribute value is a child collection (an array of objects, or empty).
fn is_child(raw: &RawValue) -> bool {
    let t = raw.get().trim_start();
    t.strip_prefix('[')
        .is_some_and(|r| matches!(r.trim_start().as_bytes().first(), Some(b'{' | b']')))
}

/// An attribute name, borrowed from the item's text unless it holds escapes.
#[derive(PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(transparent)]
struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

/// An item's attributes with their exact JSON text, borrowed from the stored text (no
/// per-attribute allocation: synthetic backfills render a million of these).
type RawMap<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// Writes `"key":`.
fn push_key(out: &mut String, k: &str) -> std::result::Result<(), String> {
    if k.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(k).map_err(|e| e.to_string())?);
    } else {
        out.push('"');
        out.push_str(k);
        out.push('"');
    }
    out.push(':');
    Ok(())
}

/// Writes one item (header or child) with the attributes in `attrs` (`None`: all) and the
/// children `p` asks for, at accessor `path` (`""` for the header).
fn render_object(
    map: &RawMap<'_>,
    path: &str,
    attrs: Option<&[String]>,
    p: &Params,
    self_href: &str,
    out: &mut String,
) -> std::result::Result<(), String> {
    out.push('{');
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
    };
    let mut child_links = Vec::new();
    let mut child_path = String::new();
    for (k, v) in map {
        let k: &str = &k.0;
        if is_child(v) {
            if !p.only_data {
                child_links.push(k);
            }
            child_path.clear();
            if !path.is_empty() {
                child_path.push_str(path);
                child_path.push('.');
            }
            child_path.push_str(k);
            let child_attrs = match p.fields.child(&child_path) {
                Served::No => continue,
                Served::All => None,
                Served::Only(a) => Some(a),
            };
            let items: Vec<RawMap<'_>> =
                serde_json::from_str(v.get()).map_err(|e| e.to_string())?;
            sep(out);
            push_key(out, k)?;
            let v3 = p.fields.framework >= 3;
            out.push_str(if v3 { "{\"items\":[" } else { "[" });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let href = if p.only_data {
                    String::new()
                } else {
                    format!("{self_href}/child/{k}/{}", i + 1)
                };
                render_object(item, &child_path, child_attrs, p, &href, out)?;
            }
            if v3 {
                let n = items.len();
                let _ = write!(
                    out,
                    "],\"count\":{n},\"hasMore\":false,\"limit\":{n},\"offset\":0}}"
                );
            } else {
                out.push(']');
            }
            continue;
        }
        if attrs.is_some_and(|a| !a.iter().any(|f| f == k))
            || (path.is_empty() && p.lacking.contains(k))
            || (!path.is_empty() && p.lacking.contains(&format!("{path}:{k}")))
        {
            continue;
        }
        sep(out);
        push_key(out, k)?;
        out.push_str(v.get());
    }
    if !p.only_data {
        let mut links = vec![
            serde_json::json!({"rel": "self", "href": self_href, "name": "item", "kind": "item"}),
        ];
        for k in child_links {
            links.push(serde_json::json!({
                "rel": "child", "href": format!("{self_href}/child/{k}"), "name": k, "kind": "collection",
            }));
        }
        sep(out);
        out.push_str("\"links\":");
        out.push_str(&serde_json::Value::Array(links).to_string());
    }
    out.push('}');
    Ok(())
}

fn render_item(
    raw: &RawValue,
    p: &Params,
    self_href: &str,
    out: &mut String,
) -> std::result::Result<(), String> {
    // Fast path: nothing to project and (no `[` at all) no child collection to omit.
    if !p.fields.projected && p.only_data && p.lacking.is_empty() && !raw.get().contains('[') {
        out.push_str(raw.get());
        return Ok(());
    }
    let map: RawMap<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    render_object(&map, "", p.fields.header.as_deref(), p, self_href, out)
}

fn synthetic_item(s: Synthetic, i: u64) -> String {
    let id = i + 1;
    let t = s.start + SignedDuration::from_secs((i / s.per_second) as i64);
    invoice_json(
        id as i64,
        t,
        &format!("{id}.25"),
        &format!("Supplier {}", id % 1000),
    )
}

pub(super) async fn collection(
    State(shared): State<Arc<Shared>>,
    Path((version, resource)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&shared, &version, &headers) {
        return refused;
    }
    shared.collection_calls.fetch_add(1, Ordering::Relaxed);
    let mut p = match params(&q, &headers) {
        Ok(p) => p,
        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
    };
    let collection_href = format!(
        "http://pod/fscmRestApi/resources/{}/{resource}",
        shared.version
    );
    let mut body = String::from("{\"items\":[");
    let (count, has_more, total) = {
        let inner = shared.lock();
        if inner.refuse_or && p.filter.as_ref().is_some_and(Expr::has_or) {
            return adf_error(StatusCode::BAD_REQUEST, "q: `or` is not supported");
        }
        if let Some(c) = p.filter.iter().flat_map(Expr::clauses).find(|c| {
            matches!(c.attr.as_str(), "LastUpdateDate" | "CreationDate")
                && !inner.date_literals.is_empty()
                && !inner
                    .date_literals
                    .contains(&super::DateLiteralForm::of(c.quote))
        }) {
            let written = c
                .quote
                .map_or_else(|| c.value.clone(), |q| format!("{q}{}{q}", c.value));
            return adf_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "URL request parameter q: the value {written} of attribute {} is not a \
                     valid date-time.",
                    c.attr
                ),
            );
        }
        let Some(coll) = inner.resources.get(&resource) else {
            return adf_error(StatusCode::NOT_FOUND, "unknown resource");
        };
        if let Some(refused) = unknown_attribute(&resource, &coll.lacking, &p) {
            return refused;
        }
        p.lacking.clone_from(&coll.lacking);
        for (attr, _) in &p.order {
            if attr != "LastUpdateDate" && attr != "CreationDate" && *attr != coll.key_attr {
                return adf_error(
                    StatusCode::BAD_REQUEST,
                    &format!("orderBy on `{attr}` is not supported by the sandbox"),
                );
            }
        }
        if let Some(s) = coll.synthetic {
            // Index order is (LastUpdateDate, InvoiceId) order, and the filters a cursor
            // sends are lower bounds in that order: the matching rows are a suffix, found
            // by binary search.
            let (mut lo, mut hi) = (0u64, s.n);
            if let Some(f) = &p.filter {
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match synthetic_matches(s, &coll.key_attr, mid, f) {
                        Ok(true) => hi = mid,
                        Ok(false) => lo = mid + 1,
                        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
                    }
                }
            }
            let first = lo;
            let total = s.n.saturating_sub(first);
            let from = first + p.offset as u64;
            let to = (from + p.limit as u64).min(s.n);
            let mut count = 0;
            for i in from..to {
                if count > 0 {
                    body.push(',');
                }
                let raw = RawValue::from_string(synthetic_item(s, i)).expect("json");
                if let Err(e) =
                    render_item(&raw, &p, &format!("{collection_href}/{}", i + 1), &mut body)
                {
                    return adf_error(StatusCode::INTERNAL_SERVER_ERROR, &e);
                }
                count += 1;
            }
            (count, to < s.n, total as usize)
        } else {
            let mut rows = Vec::new();
            for row in coll.rows.values() {
                let keep = match &p.filter {
                    None => true,
                    Some(f) => match row_matches(row, f) {
                        Ok(keep) => keep,
                        Err(e) => return adf_error(StatusCode::BAD_REQUEST, &e),
                    },
                };
                if keep {
                    rows.push(row);
                }
            }
            // Rows are already in key order; a stable sort keeps it as the last criterion.
            rows.sort_by(|a, b| {
                for (attr, asc) in &p.order {
                    let ord = match row_ts(a, attr).zip(row_ts(b, attr)) {
                        Some((x, y)) => x.cmp(&y),
                        None => SortKey::of(&a.key).cmp(&SortKey::of(&b.key)),
                    };
                    let ord = if *asc { ord } else { ord.reverse() };
                    if ord.is_ne() {
                        return ord;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let total = rows.len();
            let mut count = 0;
            for row in rows.iter().skip(p.offset).take(p.limit) {
                if count > 0 {
                    body.push(',');
                }
                if let Err(e) = render_item(
                    &row.raw,
                    &p,
                    &format!("{collection_href}/{}", row.key),
                    &mut body,
                ) {
                    return adf_error(StatusCode::INTERNAL_SERVER_ERROR, &e);
                }
                count += 1;
            }
            (count, p.offset + count < total, total)
        }
    };
    let _ = write!(
        body,
        "],\"count\":{count},\"hasMore\":{has_more},\"limit\":{},\"offset\":{}",
        p.limit, p.offset
    );
    if p.total {
        let _ = write!(body, ",\"totalResults\":{total}");
    }
    if !p.only_data {
        let _ = write!(
            body,
            ",\"links\":[{{\"rel\":\"self\",\"href\":\"{collection_href}\",\"name\":\"{resource}\",\"kind\":\"collection\"}}]"
        );
    }
    body.push('}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
