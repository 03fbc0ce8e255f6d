//! `GET /api1/x3/erp/<FOLDER>/<CLASS>?representation=<REPR>.$query&count=&where=&orderBy=&key=`
//! as the emulator serves it (see the module docs of [`super`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::query::{Expr, order_rows, parse_order, parse_where};
use super::state::{Row, lock, stamp_text};
use super::{DEFAULT_COUNT, MAX_COUNT, STAMP, Shared, auth};

/// An api1 error: the status and a `$diagnoses` body.
pub(super) fn diagnoses(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::json!({"$diagnoses": [{"$severity": "error", "$message": message}]})
            .to_string(),
    )
        .into_response()
}

/// `key=gt.<k>` (also `ge.`, `lt.`, `le.`): the comparison and the key values (`~`).
fn key_filter(v: &str, nkeys: usize) -> Result<(String, Vec<String>), String> {
    let (op, key) = v.split_once('.').ok_or("key must be <op>.<key>")?;
    if !matches!(op, "gt" | "ge" | "lt" | "le") {
        return Err(format!("bad key operator `{op}`"));
    }
    let parts: Vec<String> = key.split('~').map(str::to_owned).collect();
    if parts.len() != nkeys {
        return Err(format!("the key has {nkeys} part(s)"));
    }
    Ok((op.to_owned(), parts))
}

pub(super) async fn query(
    State(shared): State<Arc<Shared>>,
    Path((folder, class_name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !auth::authorised(&shared, &headers, None) {
        return diagnoses(StatusCode::UNAUTHORIZED, "authentication required");
    }
    if folder != shared.folder {
        return diagnoses(
            StatusCode::NOT_FOUND,
            &format!("endpoint {folder} not found"),
        );
    }
    shared.api1_calls.fetch_add(1, AtomicOrdering::Relaxed);
    let inner = lock(&shared.inner);
    let zone = inner.zone.clone();
    let Some(class) = inner.classes.get(&class_name) else {
        return diagnoses(
            StatusCode::NOT_FOUND,
            &format!("class {class_name} not found"),
        );
    };
    let Some(repr) = q.get("representation") else {
        return diagnoses(StatusCode::BAD_REQUEST, "representation is required");
    };
    let Some(repr_name) = repr.strip_suffix(".$query") else {
        return diagnoses(
            StatusCode::BAD_REQUEST,
            "only the $query facet is served here",
        );
    };
    if repr_name != class.representation {
        return diagnoses(
            StatusCode::NOT_FOUND,
            &format!("representation {repr_name} not found"),
        );
    }
    let count = match q.get("count").map(|c| c.parse::<usize>()) {
        None => DEFAULT_COUNT,
        Some(Ok(n)) if n > 0 => n.min(MAX_COUNT),
        Some(_) => return diagnoses(StatusCode::BAD_REQUEST, "count must be a positive number"),
    };
    let filter: Option<Expr> = match q.get("where").filter(|w| !w.trim().is_empty()) {
        None => None,
        Some(w) => match parse_where(w) {
            Ok(e) => Some(e),
            Err(e) => return diagnoses(StatusCode::BAD_REQUEST, &format!("where: {e}")),
        },
    };
    let order = match q.get("orderBy") {
        None => Vec::new(),
        Some(o) => match parse_order(o) {
            Ok(o) => o,
            Err(e) => return diagnoses(StatusCode::BAD_REQUEST, &format!("orderBy: {e}")),
        },
    };
    // X3 answers an unknown property with HTTP 500, not 400.
    let mut named = Vec::new();
    if let Some(f) = &filter {
        f.properties(&mut named);
    }
    named.extend(order.iter().map(|(p, _)| p.clone()));
    if let Some(p) = named.iter().find(|p| !class.has(p)) {
        return diagnoses(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Property '{p}' does not exist in representation {repr_name}"),
        );
    }
    let key_cond = match q.get("key") {
        None => None,
        Some(k) => match key_filter(k, class.keys.len()) {
            Ok(k) => Some(k),
            Err(e) => return diagnoses(StatusCode::BAD_REQUEST, &format!("key: {e}")),
        },
    };
    let mut hits: Vec<(&Vec<String>, &Row)> = class
        .rows
        .iter()
        .filter(|(k, row)| {
            let key_ok = key_cond.as_ref().is_none_or(|(op, at)| match op.as_str() {
                "gt" => *k > at,
                "ge" => *k >= at,
                "lt" => *k < at,
                _ => *k <= at,
            });
            key_ok && filter.as_ref().is_none_or(|f| f.matches(row, &zone))
        })
        .collect();
    // Sorted by orderBy (then key); `$next` still continues after the last KEY served,
    // whatever the order: that is what api1 does.
    if !order.is_empty() {
        hits.sort_by(|a, b| order_rows(a.1, b.1, &order, STAMP, &zone).then(a.0.cmp(b.0)));
    }
    let more = hits.len() > count;
    hits.truncate(count);
    let mut resources = String::from("[");
    for (i, (key, row)) in hits.iter().enumerate() {
        if i > 0 {
            resources.push(',');
        }
        resources.push_str(&render(key, row, class, &zone));
    }
    resources.push(']');
    let mut body = format!("{{\"$itemsPerPage\":{count},\"$resources\":{resources}");
    if more && let Some((last, _)) = hits.last() {
        let mut params: Vec<(String, String)> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "key")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        params.sort();
        params.push(("key".into(), format!("gt.{}", last.join("~"))));
        let url = format!(
            "{}api1/x3/erp/{folder}/{class_name}?{}",
            shared.root_url,
            serde_urlencoded::to_string(&params).unwrap_or_default()
        );
        let _ = write!(
            body,
            ",\"$links\":{{\"$next\":{{\"$url\":{},\"$type\":\"application/json; vnd.sage=syracuse\",\"$method\":\"GET\"}}}}",
            serde_json::Value::String(url)
        );
    }
    body.push('}');
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json; vnd.sage=syracuse; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// One resource: `$key`, `$uuid`-free, the representation's properties (those this
/// release lacks left out), `UPDDATTIM` in the served zone.
fn render(
    key: &[String],
    row: &Row,
    class: &super::state::Class,
    zone: &jiff::tz::TimeZone,
) -> String {
    let mut out = format!("{{\"$key\":{}", serde_json::Value::String(key.join("~")));
    for (p, v) in &row.props {
        if class.lacking.contains(p) {
            continue;
        }
        out.push(',');
        out.push_str(&serde_json::Value::String(p.clone()).to_string());
        out.push(':');
        if p == STAMP {
            out.push_str(&serde_json::Value::String(stamp_text(row.stamp, zone)).to_string());
        } else {
            out.push_str(v.get());
        }
    }
    out.push('}');
    out
}
