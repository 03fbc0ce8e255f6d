//! The Gateway's HTTP surface: auth, `sap-client`, CSRF, collection reads with paging,
//! single entities and writes.

// Handlers answer early with a ready `Response` as the error: boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::cmp::Ordering as CmpOrdering;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::filter::{self, Val};
use super::{Inner, Row, SID, STAMP, Shared, ms};
use crate::emulator::basic_credentials;

pub(crate) fn v2_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": {"lang": "en", "value": message},
            "innererror": {"transactionid": "0000000000000000000000000000ML00", "errordetails": []},
        }
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn logon_failed() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::WWW_AUTHENTICATE,
                "Basic realm=\"SAP NetWeaver Application Server [ECC]\"",
            ),
        ],
        "<html><head><title>Logon Error Message</title></head><body>Logon failed</body></html>",
    )
        .into_response()
}

fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Response> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or("")).map_err(|_| {
        v2_error(
            StatusCode::BAD_REQUEST,
            "/IWBEP/CM_MGW_RT/001",
            "The query string is malformed",
        )
    })
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Basic auth with the configured user in the configured client; `None` when allowed.
fn refuse(shared: &Shared, headers: &HeaderMap, q: &[(String, String)]) -> Option<Response> {
    let ok_user =
        basic_credentials(headers).is_some_and(|(u, p)| u == shared.user && p == shared.password);
    let ok_client = param(q, "sap-client").is_some_and(|c| c == shared.client);
    (!ok_user || !ok_client).then(logon_failed)
}

fn session_cookie_name(client: &str) -> String {
    format!("SAP_SESSIONID_{SID}_{client}")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn wants_fetch(headers: &HeaderMap) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("fetch"))
}

/// Adds a token (and, for a new session, the cookies) to a read's answer.
fn issue_csrf(shared: &Shared, headers: &HeaderMap, mut response: Response) -> Response {
    let name = session_cookie_name(&shared.client);
    let mut inner = shared.lock();
    let existing = cookie(headers, &name)
        .filter(|s| inner.csrf.values().any(|v| v == s))
        .map(str::to_owned);
    let id = inner.next_id;
    inner.next_id += 1;
    let session = existing
        .clone()
        .unwrap_or_else(|| format!("S{id:08}{}", shared.reads.load(Ordering::Relaxed)));
    let token = format!("csrf-{id:06}-{}", session.len() * 7 + id as usize);
    inner.csrf.insert(token.clone(), session.clone());
    drop(inner);
    shared.csrf_fetches.fetch_add(1, Ordering::Relaxed);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&token) {
        h.insert("x-csrf-token", v);
    }
    if existing.is_none() {
        for c in [
            format!("{name}={session}; path=/; HttpOnly"),
            format!("sap-usercontext=sap-client={}; path=/", shared.client),
        ] {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
    }
    response
}

fn csrf_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let inner = shared.lock();
    let Some(session) = inner.csrf.get(token) else {
        return false;
    };
    cookie(headers, &session_cookie_name(&shared.client)) == Some(session.as_str())
}

fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::HeaderName::from_static("x-csrf-token"), "Required"),
        ],
        "CSRF token validation failed",
    )
        .into_response()
}

fn wants_json(q: &[(String, String)], headers: &HeaderMap) -> Option<bool> {
    match param(q, "$format") {
        Some("json") => Some(true),
        Some("xml" | "atom") => Some(false),
        Some(_) => None,
        None => Some(
            headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json")),
        ),
    }
}

fn atom() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/atom+xml;type=feed; charset=utf-8",
        )],
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"/>",
    )
        .into_response()
}

fn json_ok(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A weak ETag from the stamp (the format of real ETags is the service's choice).
fn etag(t: Timestamp) -> String {
    format!("W/\"{}\"", t.as_millisecond())
}

fn entity(shared: &Shared, set: &str, type_name: &str, key: &str, row: &Row) -> Value {
    let mut m = Map::new();
    m.insert(
        "__metadata".into(),
        json!({
            "id": format!("{}/sap/opu/odata/sap/{}/{set}('{key}')", shared.base_url, shared.service),
            "uri": format!("{}/sap/opu/odata/sap/{}/{set}('{key}')", shared.base_url, shared.service),
            "type": type_name,
            "etag": etag(row.stamp),
        }),
    );
    for (k, v) in &row.props {
        m.insert(k.clone(), v.clone());
    }
    m.insert(
        STAMP.into(),
        Value::String(format!("/Date({})/", row.stamp.as_millisecond())),
    );
    Value::Object(m)
}

fn val(row: &Row, prop: &str) -> Val {
    if prop == STAMP {
        return Val::Instant(row.stamp);
    }
    match row.props.get(prop) {
        Some(Value::String(s)) => Val::Text(s.clone()),
        Some(Value::Null) | None => Val::Null,
        Some(other) => Val::Text(other.to_string()),
    }
}

fn cmp_val(a: &Val, b: &Val) -> CmpOrdering {
    match (a, b) {
        (Val::Instant(x), Val::Instant(y)) => x.cmp(y),
        (Val::Text(x), Val::Text(y)) => x.cmp(y),
        (Val::Null, Val::Null) => CmpOrdering::Equal,
        // Nulls first, then instants, then texts.
        (Val::Null, _) | (Val::Instant(_), Val::Text(_)) => CmpOrdering::Less,
        (_, Val::Null) | (Val::Text(_), Val::Instant(_)) => CmpOrdering::Greater,
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$'(),:*/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn bad(message: &str) -> Response {
    v2_error(StatusCode::BAD_REQUEST, "/IWBEP/CM_MGW_RT/022", message)
}

fn number(q: &[(String, String)], name: &str) -> Result<Option<usize>, Response> {
    param(q, name)
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| bad(&format!("Invalid system query option {name}={v}")))
        })
        .transpose()
}

fn read_collection(shared: &Shared, set_name: &str, q: &[(String, String)]) -> Response {
    let inner = shared.lock();
    let Some(set) = inner.sets.get(set_name) else {
        return v2_error(
            StatusCode::NOT_FOUND,
            "/IWBEP/CM_MGW_RT/021",
            &format!("Resource not found for segment '{set_name}'"),
        );
    };
    let known =
        |p: &str| p == STAMP || p == set.key || set.rows.values().any(|r| r.props.contains_key(p));
    let expr = match param(q, "$filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(f) => match filter::parse(f).and_then(|e| e.check(STAMP, &known).map(|()| e)) {
            Ok(e) => Some(e),
            Err(why) => return bad(&format!("Invalid filter expression: {why}")),
        },
    };
    let mut order = Vec::new();
    if let Some(o) = param(q, "$orderby") {
        for part in o.split(',') {
            let mut words = part.split_whitespace();
            let Some(prop) = words.next() else {
                return bad("Invalid $orderby");
            };
            let desc = match words.next() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => return bad(&format!("Invalid sort order '{other}'")),
            };
            if words.next().is_some() || !known(prop) {
                return bad(&format!("Invalid $orderby property '{prop}'"));
            }
            order.push((prop.to_owned(), desc));
        }
    }
    let (top, skip, skiptoken) = match (
        number(q, "$top"),
        number(q, "$skip"),
        number(q, "$skiptoken"),
    ) {
        (Ok(t), Ok(s), Ok(k)) => (t, s.unwrap_or(0), k.unwrap_or(0)),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let count = match param(q, "$inlinecount") {
        None | Some("none") => false,
        Some("allpages") => true,
        Some(other) => return bad(&format!("Invalid $inlinecount '{other}'")),
    };
    let mut rows: Vec<(&String, &Row)> = set
        .rows
        .iter()
        .filter(|(_, r)| expr.as_ref().is_none_or(|e| e.eval(&|p| val(r, p))))
        .collect();
    rows.sort_by(|(ka, a), (kb, b)| {
        for (p, desc) in &order {
            let c = cmp_val(&val(a, p), &val(b, p));
            let c = if *desc { c.reverse() } else { c };
            if c != CmpOrdering::Equal {
                return c;
            }
        }
        ka.cmp(kb)
    });
    let total = rows.len();
    let after_skip: Vec<_> = rows.into_iter().skip(skip).collect();
    let limit = top.unwrap_or(usize::MAX).min(after_skip.len());
    let start = skiptoken.min(limit);
    let end = start.saturating_add(inner.max_page).min(limit);
    let results: Vec<Value> = after_skip[start..end]
        .iter()
        .map(|(k, r)| entity(shared, set_name, &set.type_name, k, r))
        .collect();
    let mut d = Map::new();
    d.insert("results".into(), Value::Array(results));
    if count {
        d.insert("__count".into(), Value::String(total.to_string()));
    }
    if end < limit {
        let mut pairs: Vec<String> = q
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        pairs.push(format!("$skiptoken={end}"));
        d.insert(
            "__next".into(),
            Value::String(format!(
                "{}/sap/opu/odata/sap/{}/{set_name}?{}",
                shared.base_url,
                shared.service,
                pairs.join("&")
            )),
        );
    }
    drop(inner);
    shared.reads.fetch_add(1, Ordering::Relaxed);
    json_ok(StatusCode::OK, &json!({ "d": Value::Object(d) }))
}

/// Splits `Set('key')` into the set and the key.
fn split_key(resource: &str) -> Result<(&str, Option<String>), Response> {
    let Some(open) = resource.find('(') else {
        return Ok((resource, None));
    };
    let set = &resource[..open];
    let inner = resource[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| bad("Malformed key predicate"))?;
    let inner = inner.split_once('=').map_or(inner, |(_, v)| v);
    let key = inner
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .ok_or_else(|| bad("Key values must be quoted strings"))?;
    Ok((set, Some(key.replace("''", "'"))))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("The request body is not JSON"))?;
    let v = match v {
        Value::Object(mut m) if m.contains_key("d") => m.remove("d").unwrap_or(Value::Null),
        other => other,
    };
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(bad("The request body is not an entity")),
    }
}

fn write(
    shared: &Shared,
    method: &Method,
    set_name: &str,
    key: Option<String>,
    body: &[u8],
) -> Response {
    let now = ms(shared.clock.now());
    let mut inner = shared.lock();
    let Inner { sets, next_id, .. } = &mut *inner;
    let Some(set) = sets.get_mut(set_name) else {
        return v2_error(
            StatusCode::NOT_FOUND,
            "/IWBEP/CM_MGW_RT/021",
            "Resource not found",
        );
    };
    let response = match (method.as_str(), key) {
        ("POST", None) => {
            let mut props = match body_object(body) {
                Ok(p) => p,
                Err(r) => return r,
            };
            props.remove("__metadata");
            props.remove(STAMP);
            let key = match props.get(&set.key).and_then(Value::as_str) {
                Some(k) if !k.is_empty() => k.to_owned(),
                _ => {
                    let k = format!("{:010}", 4_600_000_000 + *next_id);
                    *next_id += 1;
                    props.insert(set.key.clone(), Value::String(k.clone()));
                    k
                }
            };
            if set.rows.contains_key(&key) {
                return v2_error(
                    StatusCode::BAD_REQUEST,
                    "/IWBEP/CM_MGW_RT/030",
                    "Entity already exists",
                );
            }
            let row = Row { stamp: now, props };
            let body = json!({ "d": entity(shared, set_name, &set.type_name, &key, &row) });
            set.rows.insert(key, row);
            json_ok(StatusCode::CREATED, &body)
        }
        ("PUT" | "MERGE" | "PATCH", Some(key)) => {
            let props = match body_object(body) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let set_key = set.key.clone();
            let Some(row) = set.rows.get_mut(&key) else {
                return v2_error(
                    StatusCode::NOT_FOUND,
                    "/IWBEP/CM_MGW_RT/020",
                    "Entity not found",
                );
            };
            if method == Method::PUT {
                row.props.retain(|k, _| *k == set_key);
            }
            for (k, v) in props {
                if k != "__metadata" && k != STAMP && k != set_key {
                    row.props.insert(k, v);
                }
            }
            row.stamp = now;
            StatusCode::NO_CONTENT.into_response()
        }
        ("DELETE", Some(key)) => {
            if set.rows.remove(&key).is_none() {
                return v2_error(
                    StatusCode::NOT_FOUND,
                    "/IWBEP/CM_MGW_RT/020",
                    "Entity not found",
                );
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => {
            return v2_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "/IWBEP/CM_MGW_RT/010",
                "Method not allowed",
            );
        }
    };
    drop(inner);
    shared.writes.fetch_add(1, Ordering::Relaxed);
    let mut response = response;
    response.headers_mut().insert(
        "sap-message",
        HeaderValue::from_static(r#"{"code":"ZML/001","message":"Document saved","severity":"success","target":"","details":[]}"#),
    );
    response
}

/// `/sap/opu/odata/sap/<SERVICE>/`: the service document.
pub(crate) async fn service_root(
    State(shared): State<Arc<Shared>>,
    Path(service): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match query_pairs(raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if service != shared.service {
        return v2_error(
            StatusCode::NOT_FOUND,
            "/IWFND/MED/170",
            "No service found for namespace, name, version",
        );
    }
    if let Some(r) = refuse(&shared, &headers, &q) {
        return r;
    }
    if method != Method::GET && method != Method::HEAD {
        return v2_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "/IWBEP/CM_MGW_RT/010",
            "Method not allowed",
        );
    }
    let sets: Vec<String> = shared.lock().sets.keys().cloned().collect();
    let response = json_ok(StatusCode::OK, &json!({"d": {"EntitySets": sets}}));
    if wants_fetch(&headers) {
        issue_csrf(&shared, &headers, response)
    } else {
        response
    }
}

/// `/sap/opu/odata/sap/<SERVICE>/<Set>` and `<Set>('<key>')`.
pub(crate) async fn resource(
    State(shared): State<Arc<Shared>>,
    Path((service, resource)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let q = match query_pairs(raw.as_deref()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if service != shared.service {
        return v2_error(
            StatusCode::NOT_FOUND,
            "/IWFND/MED/170",
            "No service found for namespace, name, version",
        );
    }
    if let Some(r) = refuse(&shared, &headers, &q) {
        return r;
    }
    let (set, key) = match split_key(&resource) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if method == Method::GET || method == Method::HEAD {
        let Some(json) = wants_json(&q, &headers) else {
            return bad("Unsupported $format");
        };
        if !json {
            return atom();
        }
        let response = match key {
            None => read_collection(&shared, set, &q),
            Some(k) => {
                let inner = shared.lock();
                match inner
                    .sets
                    .get(set)
                    .and_then(|s| s.rows.get(&k).map(|r| (s, r)))
                {
                    Some((s, r)) => json_ok(
                        StatusCode::OK,
                        &json!({"d": entity(&shared, set, &s.type_name, &k, r)}),
                    ),
                    None => v2_error(
                        StatusCode::NOT_FOUND,
                        "/IWBEP/CM_MGW_RT/020",
                        "Resource not found",
                    ),
                }
            }
        };
        return if wants_fetch(&headers) {
            issue_csrf(&shared, &headers, response)
        } else {
            response
        };
    }
    if !csrf_ok(&shared, &headers) {
        return csrf_refused();
    }
    write(&shared, &method, set, key, &body)
}
