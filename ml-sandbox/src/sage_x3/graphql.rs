//! `POST xtrem/api`: the GraphQL API over the same data as api1.
//!
//! Schema (names as in Sage's examples where they exist, the rest guessed and
//! unconfirmed): `Query { x3Purchasing { purchaseOrder, purchaseInvoice }, x3FinanceData
//! { journalEntry }, x3MasterData { supplier } }`; each node's operations have
//! `query(filter: String, first: Int, after: String, orderBy: String)` returning a Relay
//! connection (`edges { cursor node }`, `pageInfo { endCursor hasNextPage startCursor
//! hasPreviousPage }`). `first` defaults to 20 and is clamped to 100 (the sibling Xtrem
//! product's figures). `filter` is X3's Mongo-like string (`{field:'v'}`, `_eq _ne _gt _gte
//! _lt _lte`, nested paths); `orderBy` `{field:1|-1}`; cursors encode the sort values, so
//! paging follows the order. Decimals are served as strings, `_updateStamp` as RFC 3339.
//! Introspection: `__schema { queryType { name } }` and `__type(name:)` with `fields {
//! name type { name kind ofType … } }`. Unknown fields: HTTP 200 with `errors`
//! (`Cannot query field "x" on type "T".`) and `data: null`.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value as Json, json};

use super::gql::{Field, MValue, Value, parse, parse_mongo};
use super::state::{Row, lock, parse_instant, scalar};
use super::{Shared, auth};

/// A field's type.
#[derive(Clone, Copy)]
enum Ty {
    Scalar(&'static str),
    Object(&'static str),
    List(&'static str),
}

/// The schema: type -> fields.
fn fields_of(ty: &str) -> Option<Vec<(&'static str, Ty)>> {
    use Ty::{List, Object, Scalar};
    let s = Scalar("String");
    Some(match ty {
        "Query" => vec![
            ("x3Purchasing", Object("X3Purchasing")),
            ("x3FinanceData", Object("X3FinanceData")),
            ("x3MasterData", Object("X3MasterData")),
        ],
        "X3Purchasing" => vec![
            ("purchaseOrder", Object("PurchaseOrder_Operations")),
            ("purchaseInvoice", Object("PurchaseInvoice_Operations")),
        ],
        "X3FinanceData" => vec![("journalEntry", Object("JournalEntry_Operations"))],
        "X3MasterData" => vec![("supplier", Object("Supplier_Operations"))],
        "PageInfo" => vec![
            ("endCursor", s),
            ("startCursor", s),
            ("hasNextPage", Scalar("Boolean")),
            ("hasPreviousPage", Scalar("Boolean")),
        ],
        "PurchaseOrder" => vec![
            ("id", s),
            ("_updateStamp", Scalar("Datetime")),
            ("purchaseSite", Object("Site")),
            ("orderFromSupplier", Object("SupplierReference")),
            ("totalAmountExcludingTax", Scalar("Decimal")),
            ("currency", Object("Currency")),
            ("signatureStatus", s),
            ("orderDate", Scalar("Date")),
        ],
        "PurchaseInvoice" => vec![
            ("id", s),
            ("_updateStamp", Scalar("Datetime")),
            ("site", Object("Site")),
            ("billBySupplier", Object("SupplierReference")),
            ("totalAmountIncludingTax", Scalar("Decimal")),
            ("currency", Object("Currency")),
            ("status", s),
            ("supplierDocumentNumber", s),
            ("accountingDate", Scalar("Date")),
            ("account", s),
            ("invoiceType", s),
        ],
        "JournalEntry" => vec![
            ("id", s),
            ("type", Object("JournalEntryType")),
            ("_updateStamp", Scalar("Datetime")),
            ("company", Object("Company")),
            ("currency", Object("Currency")),
            ("accountingDate", Scalar("Date")),
            ("description", s),
            ("status", s),
            ("lines", Object("JournalEntryLine_Collection")),
        ],
        "JournalEntryLine_Collection" => vec![("query", Object("JournalEntryLine_Connection"))],
        "JournalEntryLine" => vec![
            ("lineNumber", Scalar("Int")),
            ("account", Object("Account")),
            ("transactionAmount", Scalar("Decimal")),
            ("sign", Scalar("Int")),
            ("description", s),
        ],
        "Supplier" => vec![
            ("code", s),
            ("companyName", s),
            ("country", Object("Country")),
            ("currency", Object("Currency")),
            ("_updateStamp", Scalar("Datetime")),
        ],
        "SupplierReference" => vec![("code", s), ("companyName", s)],
        "Site" | "Currency" | "Company" | "Account" | "Country" | "JournalEntryType" => {
            vec![("code", s)]
        }
        other => {
            if let Some(node) = other.strip_suffix("_Operations") {
                vec![("query", Object(leak(format!("{node}_Connection"))))]
            } else if let Some(node) = other.strip_suffix("_Connection") {
                vec![
                    ("edges", List(leak(format!("{node}_Edge")))),
                    ("pageInfo", Object("PageInfo")),
                ]
            } else if let Some(node) = other.strip_suffix("_Edge") {
                vec![("cursor", s), ("node", Object(leak(node.to_owned())))]
            } else {
                return None;
            }
        }
    })
}

/// The few generated type names, interned (a handful, bounded by the schema above).
fn leak(s: String) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.iter().find(|n| **n == s) {
        return n;
    }
    let n: &'static str = Box::leak(s.into_boxed_str());
    names.push(n);
    n
}

/// A node type's class, key properties, and GraphQL path -> property.
type NodeSource = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// Which class feeds a node type, its key property, and GraphQL path -> property.
fn node_source(ty: &str) -> Option<NodeSource> {
    Some(match ty {
        "PurchaseOrder" => (
            "PORDER",
            &["POHNUM"],
            &[
                ("id", "POHNUM"),
                ("_updateStamp", "UPDDATTIM"),
                ("purchaseSite.code", "POHFCY"),
                ("orderFromSupplier.code", "BPSNUM"),
                ("orderFromSupplier.companyName", "BPSNAM"),
                ("totalAmountExcludingTax", "TOTLINAMT"),
                ("currency.code", "CUR"),
                ("signatureStatus", "APPFLG"),
                ("orderDate", "ORDDAT"),
            ],
        ),
        "PurchaseInvoice" => (
            "PINVOICE",
            &["NUM"],
            &[
                ("id", "NUM"),
                ("_updateStamp", "UPDDATTIM"),
                ("site.code", "FCY"),
                ("billBySupplier.code", "BPR"),
                ("billBySupplier.companyName", "BPRNAM"),
                ("totalAmountIncludingTax", "AMTATI"),
                ("currency.code", "CUR"),
                ("status", "STA"),
                ("supplierDocumentNumber", "BPRVCR"),
                ("accountingDate", "ACCDAT"),
                ("account", "ACC"),
                ("invoiceType", "INVTYP"),
            ],
        ),
        "JournalEntry" => (
            "GACCENTRY",
            &["TYP", "NUM"],
            &[
                ("id", "NUM"),
                ("type.code", "TYP"),
                ("_updateStamp", "UPDDATTIM"),
                ("company.code", "CPY"),
                ("currency.code", "CUR"),
                ("accountingDate", "ACCDAT"),
                ("description", "DESVCR"),
                ("status", "STA"),
            ],
        ),
        "Supplier" => (
            "BPSUPPLIER",
            &["BPSNUM"],
            &[
                ("code", "BPSNUM"),
                ("companyName", "BPSNAM"),
                ("country.code", "CRY"),
                ("currency.code", "CUR"),
                ("_updateStamp", "UPDDATTIM"),
            ],
        ),
        _ => return None,
    })
}

fn set_path(obj: &mut Json, path: &str, v: Json) {
    let mut cur = obj;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .map(|m| m.entry((*p).to_owned()).or_insert_with(|| json!({})))
            .expect("object");
    }
    if let Some(m) = cur.as_object_mut() {
        m.insert(parts[parts.len() - 1].to_owned(), v);
    }
}

fn get_path<'a>(obj: &'a Json, path: &str) -> &'a Json {
    path.split('.').fold(obj, |v, p| &v[p])
}

/// A row as a full node (every field), scalars typed per the schema.
fn node_json(ty: &str, row: &Row) -> Json {
    let Some((_, _, map)) = node_source(ty) else {
        return Json::Null;
    };
    let mut out = json!({});
    for (path, prop) in map {
        let v = if *prop == "UPDDATTIM" {
            Json::String(row.stamp.to_string())
        } else {
            match row.props.get(*prop).and_then(|r| scalar(r)) {
                Some(t) => Json::String(t),
                None => Json::Null,
            }
        };
        set_path(&mut out, path, v);
    }
    if ty == "JournalEntry" {
        let lines: Vec<Json> = row
            .props
            .get("GACCENTRYD")
            .and_then(|r| serde_json::from_str::<Vec<serde_json::Map<String, Json>>>(r.get()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|l| {
                let text = |k: &str| {
                    l.get(k).map(|v| match v {
                        Json::String(s) => Json::String(s.clone()),
                        other => Json::String(other.to_string()),
                    })
                };
                json!({"node": {
                    "lineNumber": l.get("LIN").cloned().unwrap_or(Json::Null),
                    "account": {"code": text("ACC").unwrap_or(Json::Null)},
                    "transactionAmount": text("AMTCUR").unwrap_or(Json::Null),
                    "sign": l.get("SNS").cloned().unwrap_or(Json::Null),
                    "description": text("DES").unwrap_or(Json::Null),
                }})
            })
            .collect();
        out["lines"] = json!({"query": {"edges": lines}});
    }
    out
}

fn graphql_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"errors": [{"message": message}], "data": null}).to_string(),
    )
        .into_response()
}

/// Checks `sel` against the schema from type `ty`.
fn validate(ty: &str, sel: &[Field]) -> Result<(), String> {
    let fields = fields_of(ty).ok_or_else(|| format!("unknown type {ty}"))?;
    for f in sel {
        if f.name == "__typename" {
            continue;
        }
        let Some((_, t)) = fields.iter().find(|(n, _)| *n == f.name) else {
            return Err(format!(
                "Cannot query field \"{}\" on type \"{ty}\".",
                f.name
            ));
        };
        match t {
            Ty::Scalar(_) if !f.selection.is_empty() => {
                return Err(format!(
                    "Field \"{}\" must not have a selection since type is a scalar.",
                    f.name
                ));
            }
            Ty::Object(n) | Ty::List(n) if f.selection.is_empty() => {
                return Err(format!(
                    "Field \"{}\" of type \"{n}\" must have a selection of subfields.",
                    f.name
                ));
            }
            Ty::Object(n) | Ty::List(n) => validate(n, &f.selection)?,
            Ty::Scalar(_) => {}
        }
    }
    Ok(())
}

fn project(v: &Json, sel: &[Field]) -> Json {
    if sel.is_empty() {
        return v.clone();
    }
    match v {
        Json::Array(items) => Json::Array(items.iter().map(|i| project(i, sel)).collect()),
        Json::Object(m) => {
            let mut out = serde_json::Map::new();
            for f in sel {
                out.insert(
                    f.name.clone(),
                    m.get(&f.name)
                        .map_or(Json::Null, |x| project(x, &f.selection)),
                );
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

fn arg(f: &Field, name: &str, vars: &Json) -> Json {
    match f.args.iter().find(|(n, _)| n == name).map(|(_, v)| v) {
        None | Some(Value::Null) => Json::Null,
        Some(Value::Var(v)) => vars[v.as_str()].clone(),
        Some(Value::Str(s) | Value::Enum(s)) => Json::String(s.clone()),
        Some(Value::Int(n)) => json!(n),
        Some(Value::Bool(b)) => json!(b),
    }
}

fn compare(a: &Json, b: &Json, path: &str) -> Ordering {
    let text = |v: &Json| match v {
        Json::String(s) => Some(s.clone()),
        Json::Null => None,
        other => Some(other.to_string()),
    };
    let (x, y) = (text(a), text(b));
    if path == "_updateStamp" {
        let z = jiff::tz::TimeZone::UTC;
        return x
            .and_then(|s| parse_instant(&s, &z))
            .cmp(&y.and_then(|s| parse_instant(&s, &z)));
    }
    match (
        x.as_deref().map(str::parse::<f64>),
        y.as_deref().map(str::parse::<f64>),
    ) {
        (Some(Ok(m)), Some(Ok(n))) => m.partial_cmp(&n).unwrap_or(Ordering::Equal),
        _ => x.cmp(&y),
    }
}

/// Whether `node` passes a filter object at `prefix`.
fn passes(node: &Json, filter: &MValue, prefix: &str, ty: &str) -> Result<bool, String> {
    let MValue::Obj(map, _) = filter else {
        return Err("a filter must be an object".into());
    };
    for (k, v) in map {
        if let Some(op) = k
            .strip_prefix('_')
            .filter(|o| ["eq", "ne", "gt", "gte", "lt", "lte"].contains(o))
        {
            let want = match v {
                MValue::Str(s) => Json::String(s.clone()),
                MValue::Num(n) => Json::String(n.to_string()),
                MValue::Bool(b) => Json::String(b.to_string()),
                _ => Json::Null,
            };
            let ord = compare(get_path(node, prefix), &want, prefix);
            let ok = match op {
                "eq" => ord == Ordering::Equal,
                "ne" => ord != Ordering::Equal,
                "gt" => ord == Ordering::Greater,
                "gte" => ord != Ordering::Less,
                "lt" => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            };
            if !ok {
                return Ok(false);
            }
            continue;
        }
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if !has_path(ty, &path) {
            return Err(format!(
                "filter: unknown property \"{path}\" on type \"{ty}\""
            ));
        }
        let ok = match v {
            MValue::Obj(..) => passes(node, v, &path, ty)?,
            other => passes(
                node,
                &MValue::Obj([("_eq".to_owned(), other.clone())].into(), vec![]),
                &path,
                ty,
            )?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn has_path(ty: &str, path: &str) -> bool {
    let mut cur = ty.to_owned();
    for seg in path.split('.') {
        let Some(fields) = fields_of(&cur) else {
            return false;
        };
        match fields.iter().find(|(n, _)| *n == seg) {
            Some((_, Ty::Object(n) | Ty::List(n))) => cur = (*n).to_owned(),
            Some((_, Ty::Scalar(_))) => cur = String::new(),
            None => return false,
        }
    }
    true
}

/// `query(filter, first, after, orderBy)` over the class behind `node_ty`.
fn connection(shared: &Shared, node_ty: &str, f: &Field, vars: &Json) -> Result<Json, String> {
    for (a, _) in &f.args {
        if !["filter", "first", "after", "orderBy"].contains(&a.as_str()) {
            return Err(format!("Unknown argument \"{a}\" on field \"query\"."));
        }
    }
    let (class, keys, _) = node_source(node_ty).ok_or("no data for this node")?;
    let filter = match arg(f, "filter", vars) {
        Json::String(s) if !s.trim().is_empty() => Some(parse_mongo(&s)?),
        Json::Null | Json::String(_) => None,
        _ => return Err("filter must be a string".into()),
    };
    let mut order: Vec<(String, bool)> = match arg(f, "orderBy", vars) {
        Json::String(s) if !s.trim().is_empty() => flatten_order(&parse_mongo(&s)?, "")?,
        _ => Vec::new(),
    };
    for (p, _) in &order {
        if !has_path(node_ty, p) {
            return Err(format!(
                "orderBy: unknown property \"{p}\" on type \"{node_ty}\""
            ));
        }
    }
    let first = match arg(f, "first", vars) {
        Json::Null => 20,
        Json::Number(n) => n.as_u64().ok_or("first must be positive")?.clamp(1, 100),
        _ => return Err("first must be an Int".into()),
    };
    let after: Option<Vec<Json>> = match arg(f, "after", vars) {
        Json::String(c) => Some(
            STANDARD
                .decode(c.as_bytes())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or("after: not a cursor of this query")?,
        ),
        _ => None,
    };
    let inner = lock(&shared.inner);
    let rows = &inner.classes.get(class).ok_or("no class")?.rows;
    let _ = keys;
    let mut nodes: Vec<(Vec<Json>, Json)> = Vec::new();
    // The key is the last sort value (ties broken by it), as `id`/`code` for the node.
    order.push(("__key".into(), false));
    for (k, row) in rows {
        let mut node = node_json(node_ty, row);
        if let Some(flt) = &filter
            && !passes(&node, flt, "", node_ty)?
        {
            continue;
        }
        node["__key"] = Json::String(k.join("~"));
        let sort: Vec<Json> = order
            .iter()
            .map(|(p, _)| get_path(&node, p).clone())
            .collect();
        nodes.push((sort, node));
    }
    let cmp = |a: &[Json], b: &[Json]| {
        for (i, (p, desc)) in order.iter().enumerate() {
            let o = compare(&a[i], &b[i], p);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    };
    nodes.sort_by(|a, b| cmp(&a.0, &b.0));
    if let Some(c) = &after {
        if c.len() != order.len() {
            return Err("after: not a cursor of this query".into());
        }
        nodes.retain(|(s, _)| cmp(s, c) == Ordering::Greater);
    }
    #[allow(clippy::cast_possible_truncation)]
    let first = first as usize;
    let has_next = nodes.len() > first;
    nodes.truncate(first);
    let cursor_of = |s: &Vec<Json>| STANDARD.encode(Json::Array(s.clone()).to_string());
    let edges: Vec<Json> = nodes
        .iter()
        .map(|(s, n)| {
            let mut n = n.clone();
            if let Some(m) = n.as_object_mut() {
                m.remove("__key");
            }
            json!({"cursor": cursor_of(s), "node": n})
        })
        .collect();
    Ok(json!({
        "edges": edges,
        "pageInfo": {
            "endCursor": nodes.last().map(|(s, _)| cursor_of(s)),
            "startCursor": nodes.first().map(|(s, _)| cursor_of(s)),
            "hasNextPage": has_next,
            "hasPreviousPage": after.is_some(),
        }
    }))
}

fn flatten_order(v: &MValue, prefix: &str) -> Result<Vec<(String, bool)>, String> {
    let MValue::Obj(map, keys) = v else {
        return Err("orderBy must be an object".into());
    };
    let mut out = Vec::new();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match &map[k] {
            MValue::Num(n) if (*n - 1.0).abs() < f64::EPSILON => out.push((path, false)),
            MValue::Num(n) if (*n + 1.0).abs() < f64::EPSILON => out.push((path, true)),
            inner @ MValue::Obj(..) => out.extend(flatten_order(inner, &path)?),
            _ => return Err(format!("orderBy: {path} must be 1 or -1")),
        }
    }
    Ok(out)
}

fn type_json(name: &str) -> Json {
    let Some(fields) = fields_of(name) else {
        return Json::Null;
    };
    let fields: Vec<Json> = fields
        .iter()
        .map(|(n, t)| {
            let ty = match t {
                Ty::Scalar(s) => json!({"name": s, "kind": "SCALAR", "ofType": null}),
                Ty::Object(o) => json!({"name": o, "kind": "OBJECT", "ofType": null}),
                Ty::List(o) => json!({"name": null, "kind": "LIST", "ofType": {"name": o, "kind": "OBJECT", "ofType": null}}),
            };
            json!({"name": n, "type": ty})
        })
        .collect();
    json!({"name": name, "kind": "OBJECT", "fields": fields})
}

fn execute(shared: &Shared, sel: &[Field], vars: &Json) -> Result<Json, String> {
    let mut data = serde_json::Map::new();
    for f in sel {
        let v = match f.name.as_str() {
            "__schema" => project(&json!({"queryType": {"name": "Query"}}), &f.selection),
            "__type" => {
                let name = arg(f, "name", vars);
                project(&type_json(name.as_str().unwrap_or_default()), &f.selection)
            }
            _ => {
                validate("Query", std::slice::from_ref(f))?;
                let mut pkg = serde_json::Map::new();
                let pkg_ty = fields_of("Query")
                    .and_then(|fs| fs.into_iter().find(|(n, _)| *n == f.name))
                    .map(|(_, t)| match t {
                        Ty::Object(n) | Ty::List(n) | Ty::Scalar(n) => n,
                    })
                    .unwrap_or_default();
                for op in &f.selection {
                    let mut ops = serde_json::Map::new();
                    let op_ty = fields_of(pkg_ty)
                        .and_then(|fs| fs.into_iter().find(|(n, _)| *n == op.name))
                        .map(|(_, t)| match t {
                            Ty::Object(n) | Ty::List(n) | Ty::Scalar(n) => n,
                        })
                        .unwrap_or_default();
                    let node_ty = op_ty.strip_suffix("_Operations").unwrap_or_default();
                    for q in &op.selection {
                        let conn = connection(shared, node_ty, q, vars)?;
                        ops.insert(q.name.clone(), project(&conn, &q.selection));
                    }
                    pkg.insert(op.name.clone(), Json::Object(ops));
                }
                Json::Object(pkg)
            }
        };
        data.insert(f.name.clone(), v);
    }
    Ok(Json::Object(data))
}

/// The GraphQL route (module docs).
pub(super) async fn graphql(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let audience = format!("{}xtrem/api", shared.root_url);
    if !auth::authorised(&shared, &headers, Some(&audience)) {
        return graphql_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match headers
        .get("x-xtrem-endpoint")
        .and_then(|v| v.to_str().ok())
    {
        None => return graphql_error(StatusCode::BAD_REQUEST, "missing x-xtrem-endpoint header"),
        Some(e) if e != shared.folder => {
            return graphql_error(StatusCode::BAD_REQUEST, &format!("unknown endpoint {e}"));
        }
        Some(_) => {}
    }
    shared.graphql_calls.fetch_add(1, AtomicOrdering::Relaxed);
    let Ok(req) = serde_json::from_str::<Json>(&body) else {
        return graphql_error(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let Some(query) = req["query"].as_str() else {
        return graphql_error(StatusCode::BAD_REQUEST, "query is required");
    };
    let vars = if req["variables"].is_object() {
        req["variables"].clone()
    } else {
        json!({})
    };
    let sel = match parse(query) {
        Ok(s) => s,
        Err(e) => return graphql_error(StatusCode::BAD_REQUEST, &e),
    };
    match execute(&shared, &sel, &vars) {
        Ok(data) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"data": data}).to_string(),
        )
            .into_response(),
        Err(e) => graphql_error(StatusCode::OK, &e),
    }
}
