//! The HTTP side of the IFS emulator: projections (collections, entities, bound actions,
//! PATCH, create) and the IAM token endpoint.

// A ready answer is the natural error of a request step here.
#![allow(clippy::result_large_err)]

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::data::{PropType, Render, Row, SetData, Val};
use super::filter;
use super::{ActionCall, Shared};

/// An OData v4 error answer.
pub(super) fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                "application/json;odata.metadata=minimal",
            ),
            (header::HeaderName::from_static("odata-version"), "4.0"),
        ],
        json!({"error": {"code": code, "message": message, "details": []}}).to_string(),
    )
        .into_response()
}

fn bad_request(code: &str, message: impl Into<String>) -> Response {
    odata_error(StatusCode::BAD_REQUEST, code, &message.into())
}

pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if realm != shared.realm {
        // Keycloak: an unknown realm is 404 with `Realm does not exist`.
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"error": "Realm does not exist"}).to_string(),
        )
            .into_response();
    }
    shared.issuer.answer(&headers, &body)
}

fn render_for(shared: &Shared, headers: &HeaderMap) -> Render {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let tz_aware = headers
        .get("x-ifs-time-zone-aware-request")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Render {
        ieee754: accept.contains("ieee754compatible=true"),
        tz_aware,
        site_tz: shared.lock().site_tz.clone(),
    }
}

/// What a projection path names.
struct Target {
    svc: String,
    set: Option<String>,
    key: Option<String>,
    op: Option<String>,
}

fn parse_path(rest: &str) -> Option<Target> {
    let mut parts = rest.splitn(3, '/');
    let svc = parts.next()?.strip_suffix(".svc")?.to_owned();
    let set_seg = parts.next().filter(|s| !s.is_empty());
    let op = parts.next().map(str::to_owned);
    let (set, key) = match set_seg {
        None => (None, None),
        Some(seg) => match seg.split_once('(') {
            Some((set, k)) => (Some(set.to_owned()), Some(k.strip_suffix(')')?.to_owned())),
            None => (Some(seg.to_owned()), None),
        },
    };
    Some(Target { svc, set, key, op })
}

/// The key texts (in key order) of a key predicate: `'P1'`, `OrderNo='P1'`,
/// `Company='10',InvoiceId=5`. Types are checked (a quoted number is an error).
fn parse_key(data: &SetData, pred: &str) -> Result<Vec<String>, String> {
    let mut named = BTreeMap::new();
    let mut rest = pred.trim();
    let mut positional = None;
    while !rest.is_empty() {
        let (name, after) = match rest.split_once('=') {
            Some((n, a)) if !n.contains('\'') => (Some(n.trim().to_owned()), a.trim_start()),
            _ => (None, rest),
        };
        let (lit, tail) = if let Some(q) = after.strip_prefix('\'') {
            let mut v = String::new();
            let mut it = q.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = it.next() {
                if c == '\'' {
                    if it.peek().map(|x| x.1) == Some('\'') {
                        v.push('\'');
                        it.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    v.push(c);
                }
            }
            let end = end.ok_or("unterminated key literal")?;
            ((v, true), &q[end..])
        } else {
            let i = after.find(',').unwrap_or(after.len());
            ((after[..i].trim().to_owned(), false), &after[i..])
        };
        match name {
            Some(n) => {
                named.insert(n, lit);
            }
            None => positional = Some(lit),
        }
        rest = tail
            .trim_start()
            .strip_prefix(',')
            .unwrap_or(tail)
            .trim_start();
    }
    if let Some(p) = positional {
        if data.def.keys.len() != 1 || !named.is_empty() {
            return Err("the entity has a compound key: name every key property".into());
        }
        named.insert(data.def.keys[0].clone(), p);
    }
    if named.len() != data.def.keys.len() {
        return Err(format!("the key is ({})", data.def.keys.join(",")));
    }
    data.def
        .keys
        .iter()
        .map(|k| {
            let (v, quoted) = named
                .get(k)
                .ok_or_else(|| format!("key property {k} missing"))?;
            let ty = data.def.prop(k).unwrap_or(PropType::String);
            match (ty, quoted) {
                (PropType::String, true) => Ok(v.clone()),
                (PropType::Int, false) if v.parse::<i64>().is_ok() => {
                    Ok(v.parse::<i64>().unwrap_or_default().to_string())
                }
                _ => Err(format!("the literal for key {k} has the wrong type")),
            }
        })
        .collect()
}

/// Every projection request: auth, the metadata-refresh trap, then by method and path.
pub(super) async fn projection(
    State(shared): State<Arc<Shared>>,
    Path((area, rest)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if area != "main" && area != "int" {
        return odata_error(
            StatusCode::NOT_FOUND,
            "ODP_RESOURCE_NOTFOUND",
            "no such area",
        );
    }
    if !shared.issuer.authorises(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            String::new(),
        )
            .into_response();
    }
    if shared
        .mi_burst
        .fetch_update(AtomicOrdering::SeqCst, AtomicOrdering::SeqCst, |n| {
            n.checked_sub(1)
        })
        .is_ok()
    {
        let mut r = odata_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "MI_MODIFIED_ERROR",
            "The projection metadata is being refreshed. Try again.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let Some(target) = parse_path(&rest) else {
        return odata_error(
            StatusCode::NOT_FOUND,
            "ODP_RESOURCE_NOTFOUND",
            "not a projection path",
        );
    };
    if target.svc == super::history::HISTORY_PROJECTION {
        match shared.lock().history.access {
            super::history::HistoryAccess::Granted => {}
            super::history::HistoryAccess::Forbidden => {
                return odata_error(
                    StatusCode::FORBIDDEN,
                    "ODP_FORBIDDEN",
                    "You do not have permission to access the projection HistoryLogHandling.",
                );
            }
            super::history::HistoryAccess::NotInstalled => {
                return odata_error(
                    StatusCode::NOT_FOUND,
                    "ODP_RESOURCE_NOTFOUND",
                    "Resource not found for the segment 'HistoryLogHandling.svc'",
                );
            }
        }
        if method != Method::GET {
            return odata_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "ODP_METHOD_NOT_ALLOWED",
                "the history log is read-only",
            );
        }
    }
    let render = render_for(&shared, &headers);
    match (method, &target.set, &target.key, &target.op) {
        (Method::GET, None, _, _) => service_document(&shared, &target.svc),
        (Method::GET, Some(set), None, None) if set == "$metadata" => odata_error(
            StatusCode::NOT_IMPLEMENTED,
            "ODP_NOT_IMPLEMENTED",
            "$metadata is not emulated",
        ),
        (Method::GET, Some(set), None, None) => collection(
            &shared,
            &target.svc,
            set,
            query.as_deref(),
            &headers,
            &render,
        ),
        (Method::GET, Some(set), Some(key), None) => {
            entity(&shared, &target.svc, set, key, &render)
        }
        (Method::POST, Some(set), Some(key), Some(op)) => {
            action(&shared, &target.svc, set, key, op, &headers)
        }
        (Method::PATCH, Some(set), Some(key), None) => {
            patch(&shared, &target.svc, set, key, &headers, &body, &render)
        }
        (Method::POST, Some(set), None, None) => create(&shared, &target.svc, set, &body, &render),
        _ => odata_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "ODP_METHOD_NOT_ALLOWED",
            "method not allowed here",
        ),
    }
}

fn service_document(shared: &Shared, svc: &str) -> Response {
    let inner = shared.lock();
    let sets: Vec<Value> = inner
        .sets
        .values()
        .filter(|d| d.def.projection == svc)
        .map(|d| json!({"name": d.def.set, "kind": "EntitySet", "url": d.def.set}))
        .collect();
    if sets.is_empty() {
        return odata_error(
            StatusCode::NOT_FOUND,
            "ODP_RESOURCE_NOTFOUND",
            "no such projection",
        );
    }
    json_ok(json!({"@odata.context": "$metadata", "value": sets}).to_string())
}

fn json_ok(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "application/json;odata.metadata=minimal;IEEE754Compatible=true",
            ),
            (header::HeaderName::from_static("odata-version"), "4.0"),
        ],
        body,
    )
        .into_response()
}

fn set_key(svc: &str, set: &str) -> String {
    format!("{svc}.svc/{set}")
}

fn missing_set(set: &str) -> Response {
    odata_error(
        StatusCode::NOT_FOUND,
        "ODP_RESOURCE_NOTFOUND",
        &format!("Resource not found for the segment '{set}'"),
    )
}

fn collection(
    shared: &Shared,
    svc: &str,
    set: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    render: &Render,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw_query.unwrap_or_default()).unwrap_or_default();
    let inner = shared.lock();
    let Some(data) = inner.sets.get(&set_key(svc, set)) else {
        return missing_set(set);
    };
    let mut filter_expr = None;
    let mut select: Option<Vec<String>> = None;
    let mut order: Vec<(String, bool)> = Vec::new();
    let (mut top, mut skip, mut token, mut count) = (None, 0usize, 0usize, false);
    for (k, v) in &pairs {
        let num = |what: &str| {
            v.trim().parse::<usize>().map_err(|_| {
                bad_request(
                    "ODP_BAD_REQUEST",
                    format!("{what} must be a non-negative integer"),
                )
            })
        };
        match k.as_str() {
            "$filter" => {
                let tz = (!render.tz_aware).then(|| render.site_tz.clone());
                match filter::parse(v, &data.def, tz) {
                    Ok(e) => filter_expr = Some(e),
                    Err((code, m)) => return bad_request(code, m),
                }
            }
            "$select" => {
                let names: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(n) = names.iter().find(|n| data.def.prop(n).is_none()) {
                    return bad_request(
                        "ODP_BAD_REQUEST",
                        format!("property `{n}` in $select does not exist"),
                    );
                }
                select = Some(names);
            }
            "$orderby" => {
                for term in v.split(',') {
                    let mut w = term.split_whitespace();
                    let name = w.next().unwrap_or_default().to_owned();
                    let desc = match w.next() {
                        None | Some("asc") => false,
                        Some("desc") => true,
                        Some(o) => {
                            return bad_request(
                                "ODP_BAD_REQUEST",
                                format!("bad $orderby direction `{o}`"),
                            );
                        }
                    };
                    if data.def.prop(&name).is_none() {
                        return bad_request(
                            "ODP_BAD_REQUEST",
                            format!("property `{name}` in $orderby does not exist"),
                        );
                    }
                    order.push((name, desc));
                }
            }
            "$top" => match num("$top") {
                Ok(n) => top = Some(n),
                Err(r) => return r,
            },
            "$skip" => match num("$skip") {
                Ok(n) => skip = n,
                Err(r) => return r,
            },
            "$skiptoken" => match num("$skiptoken") {
                Ok(n) => token = n,
                Err(r) => return r,
            },
            "$count" => count = v == "true",
            "$expand" => {
                return odata_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "ODP_NOT_IMPLEMENTED",
                    "$expand is not supported here",
                );
            }
            "$format" | "$apply" | "$search" => {
                return odata_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "ODP_NOT_IMPLEMENTED",
                    &format!("{k} is not emulated"),
                );
            }
            other if other.starts_with('$') => {
                return bad_request(
                    "ODP_BAD_REQUEST",
                    format!("unknown system query option `{other}`"),
                );
            }
            _ => {}
        }
    }
    let mut rows: Vec<&Row> = data
        .rows
        .values()
        .filter(|r| filter_expr.as_ref().is_none_or(|e| filter::eval(e, r)))
        .collect();
    let keys = &data.def.keys;
    rows.sort_by(|a, b| {
        for (name, desc) in &order {
            let o = a.get(name).compare(b.get(name)).unwrap_or(Ordering::Equal);
            if o != Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        keys.iter()
            .map(|k| a.get(k).compare(b.get(k)).unwrap_or(Ordering::Equal))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    let total = rows.len();
    let window: Vec<&Row> = rows
        .into_iter()
        .skip(skip)
        .take(top.unwrap_or(usize::MAX))
        .collect();
    let cap = shared.max_page.load(AtomicOrdering::Relaxed).max(1);
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|p| {
            p.strip_prefix("odata.maxpagesize=")
                .and_then(|n| n.parse::<usize>().ok())
        });
    let page_size = prefer.map_or(cap, |p| p.clamp(1, cap));
    let page: Vec<&Row> = window.iter().skip(token).take(page_size).copied().collect();
    let next = token + page.len();
    let context = format!(
        "{}/{}/$metadata#{set}",
        shared.service_base(),
        svc_name(svc)
    );
    let mut body = format!("{{\"@odata.context\":{}", Value::from(context));
    if count {
        let c = if render.ieee754 {
            format!("\"{total}\"")
        } else {
            total.to_string()
        };
        let _ = write!(body, ",\"@odata.count\":{c}");
    }
    body.push_str(",\"value\":[");
    for (i, r) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&r.to_json(&data.def, render, select.as_deref(), None));
    }
    body.push(']');
    if next < window.len() {
        // Offset-based, like IFS: the next request skips by count, whatever changed since.
        let kept: Vec<&str> = raw_query
            .unwrap_or_default()
            .split('&')
            .filter(|p| {
                !p.is_empty() && !p.starts_with("$skiptoken=") && !p.starts_with("%24skiptoken=")
            })
            .collect();
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        let link = format!(
            "{}/{}/{set}?{q}$skiptoken={next}",
            shared.service_base(),
            svc_name(svc)
        );
        let _ = write!(body, ",\"@odata.nextLink\":{}", Value::from(link));
    }
    body.push('}');
    let mut response = json_ok(body);
    if prefer.is_some()
        && let Ok(v) = header::HeaderValue::from_str(&format!("odata.maxpagesize={page_size}"))
    {
        response.headers_mut().insert("preference-applied", v);
    }
    response
}

fn svc_name(svc: &str) -> String {
    format!("{svc}.svc")
}

fn find<'a>(data: &'a SetData, key: &str) -> Result<(Vec<String>, &'a Row), Response> {
    let k = parse_key(data, key).map_err(|m| bad_request("ODP_BAD_REQUEST", m))?;
    match data.rows.get(&k) {
        Some(r) => Ok((k, r)),
        None => Err(odata_error(
            StatusCode::NOT_FOUND,
            "ODP_RESOURCE_NOTFOUND",
            &format!("No {} with key ({key})", data.def.entity),
        )),
    }
}

fn entity(shared: &Shared, svc: &str, set: &str, key: &str, render: &Render) -> Response {
    let inner = shared.lock();
    let Some(data) = inner.sets.get(&set_key(svc, set)) else {
        return missing_set(set);
    };
    let (_, row) = match find(data, key) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let context = format!(
        "{}/{}/$metadata#{set}/$entity",
        shared.service_base(),
        svc_name(svc)
    );
    let mut r = json_ok(row.to_json(&data.def, render, None, Some(&context)));
    if let Ok(v) = header::HeaderValue::from_str(&row.etag()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Checks `If-Match` against the row: 428 without, 412 stale.
fn precondition(headers: &HeaderMap, row: &Row) -> Result<Option<String>, Response> {
    let Some(sent) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(odata_error(
            StatusCode::PRECONDITION_REQUIRED,
            "ODP_PRECONDITION_REQUIRED",
            "This request requires an If-Match header with the entity's ETag.",
        ));
    };
    let sent = sent.trim().to_owned();
    if sent != "*" && sent != row.etag() {
        return Err(odata_error(
            StatusCode::PRECONDITION_FAILED,
            "ODP_PRECONDITION_FAILED",
            "The record has been modified by another user. Refresh and try again.",
        ));
    }
    Ok(Some(sent))
}

fn touched(shared: &Shared, row: &mut Row, stamp: &str) {
    row.version += 1;
    row.values
        .insert(stamp.to_owned(), Val::Dto(shared.stamp_now()));
}

fn no_content(etag: &str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = header::HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut()
        .insert("odata-version", header::HeaderValue::from_static("4.0"));
    r
}

fn action(
    shared: &Shared,
    svc: &str,
    set: &str,
    key: &str,
    op: &str,
    headers: &HeaderMap,
) -> Response {
    let mut inner = shared.lock();
    if let Some((edit_set, k, changes)) = inner.edit_before_action.take()
        && let Some((path, data)) = inner.sets.iter_mut().find(|(_, d)| d.def.set == edit_set)
        && let Some(mut row) = data.rows.get(&k).cloned()
        && apply_changes(data, &mut row, &changes, false).is_ok()
    {
        let stamp = data.def.stamp.clone();
        let path = path.clone();
        touched(shared, &mut row, &stamp);
        data.rows.insert(k.clone(), row);
        super::history::log_change(&mut inner, &path, &k, "Update", shared.stamp_now());
    }
    let Some(data) = inner.sets.get(&set_key(svc, set)) else {
        return missing_set(set);
    };
    let prefix = format!("IfsApp.{svc}.{}_", data.def.entity);
    let Some(def) = op
        .strip_prefix(&prefix)
        .and_then(|name| data.def.actions.iter().find(|a| a.name == name))
        .cloned()
    else {
        return odata_error(
            StatusCode::NOT_FOUND,
            "ODP_RESOURCE_NOTFOUND",
            &format!("Resource not found for the segment '{op}'"),
        );
    };
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !ct_ok {
        return odata_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ODP_UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        );
    }
    let denied = data.denied.contains(&def.name);
    let (k, row) = match find(data, key) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let sent = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record = |status: u16| ActionCall {
        set: set.to_owned(),
        key: k.clone(),
        action: def.name.clone(),
        if_match: sent.clone(),
        status,
    };
    if denied {
        inner.actions.push(record(403));
        return odata_error(
            StatusCode::FORBIDDEN,
            "ODP_FORBIDDEN",
            &format!("You do not have permission to execute {op}."),
        );
    }
    if let Err(r) = precondition(headers, row) {
        let status = r.status().as_u16();
        inner.actions.push(record(status));
        return r;
    }
    let state_prop = data.def.state.clone().unwrap_or_default();
    let state = match row.get(&state_prop) {
        Val::Str(s) => s.clone(),
        _ => String::new(),
    };
    if !def.from.contains(&state) {
        inner.actions.push(record(400));
        return bad_request(
            "FND_STATE_ERROR",
            format!("{} cannot be performed in state {state}.", def.name),
        );
    }
    let stamp = data.def.stamp.clone();
    let etag = {
        let Some(data) = inner.sets.get_mut(&set_key(svc, set)) else {
            return missing_set(set);
        };
        let Some(row) = data.rows.get_mut(&k) else {
            return missing_set(set);
        };
        row.values.insert(state_prop, Val::Str(def.to.clone()));
        touched(shared, row, &stamp);
        row.etag()
    };
    super::history::log_change(
        &mut inner,
        &set_key(svc, set),
        &k,
        "Update",
        shared.stamp_now(),
    );
    inner.actions.push(record(204));
    no_content(&etag)
}

pub(super) fn apply_changes(
    data: &SetData,
    row: &mut Row,
    body: &Value,
    allow_keys: bool,
) -> Result<(), String> {
    let obj = body.as_object().ok_or("the body must be a JSON object")?;
    for (name, v) in obj {
        if name.starts_with('@') {
            continue;
        }
        let ty = data
            .def
            .prop(name)
            .ok_or_else(|| format!("property `{name}` does not exist"))?;
        if !allow_keys && data.def.keys.contains(name) {
            return Err(format!("key property `{name}` cannot be changed"));
        }
        if name == &data.def.stamp && !allow_keys {
            return Err(format!("`{name}` is set by the server"));
        }
        row.values.insert(name.clone(), Val::from_json(ty, v)?);
    }
    Ok(())
}

fn patch(
    shared: &Shared,
    svc: &str,
    set: &str,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
    _render: &Render,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad_request("ODP_BAD_REQUEST", "the body is not JSON");
    };
    let mut inner = shared.lock();
    let Some(data) = inner.sets.get_mut(&set_key(svc, set)) else {
        return missing_set(set);
    };
    let (k, row) = match find(data, key) {
        Ok((k, r)) => (k, r.clone()),
        Err(r) => return r,
    };
    if let Err(r) = precondition(headers, &row) {
        return r;
    }
    let mut row = row;
    if let Err(m) = apply_changes(data, &mut row, &body, false) {
        return bad_request("ODP_BAD_REQUEST", m);
    }
    let stamp = data.def.stamp.clone();
    touched(shared, &mut row, &stamp);
    let etag = row.etag();
    data.rows.insert(k.clone(), row);
    super::history::log_change(
        &mut inner,
        &set_key(svc, set),
        &k,
        "Update",
        shared.stamp_now(),
    );
    no_content(&etag)
}

fn create(shared: &Shared, svc: &str, set: &str, body: &[u8], render: &Render) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad_request("ODP_BAD_REQUEST", "the body is not JSON");
    };
    match shared.insert_value(&set_key(svc, set), &body) {
        Ok(k) => {
            let inner = shared.lock();
            let Some(data) = inner.sets.get(&set_key(svc, set)) else {
                return missing_set(set);
            };
            let Some(row) = data.rows.get(&k) else {
                return missing_set(set);
            };
            let mut r = (
                StatusCode::CREATED,
                [(
                    header::CONTENT_TYPE,
                    "application/json;odata.metadata=minimal",
                )],
                row.to_json(&data.def, render, None, None),
            )
                .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&row.etag()) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(m) => bad_request("ODP_BAD_REQUEST", m),
    }
}
