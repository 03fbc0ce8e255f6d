//! Writes during a run: the REST API's own create (`POST` on a collection) and update
//! (`PATCH` on an item), which stamp `LastUpdateDate` with the emulator clock as Fusion's
//! who-columns are, and a sandbox-only `PUT /sandbox/oracle/<resource>` that stores an item
//! exactly as given (any timestamps: late commits, back-dated edits).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Shared, SortKey, adf_error, oracle_ts};

/// The media types Fusion accepts for an item body.
fn is_item_media_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || m == "application/vnd.oracle.adf.resourceitem+json"
        })
}

fn item_response(status: StatusCode, item: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/vnd.oracle.adf.resourceitem+json",
        )],
        item.to_owned(),
    )
        .into_response()
}

/// Checks version, auth and body; returns the body's attributes.
fn accept(
    shared: &Shared,
    version: &str,
    headers: &HeaderMap,
    body: &str,
) -> Result<BTreeMap<String, Value>, Box<Response>> {
    if let Some(refused) = super::refusal(shared, version, headers) {
        return Err(Box::new(refused));
    }
    if !is_item_media_type(headers) {
        return Err(Box::new(adf_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "use application/vnd.oracle.adf.resourceitem+json",
        )));
    }
    serde_json::from_str(body).map_err(|e| {
        Box::new(adf_error(
            StatusCode::BAD_REQUEST,
            &format!("not a JSON object: {e}"),
        ))
    })
}

/// `POST .../<resource>`: creates an item. The server sets `CreationDate` and
/// `LastUpdateDate`; a missing numeric key is assigned (highest + 1).
pub(super) async fn create(
    State(shared): State<Arc<Shared>>,
    Path((version, resource)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut attrs = match accept(&shared, &version, &headers, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let now = shared.clock.now();
    let mut inner = shared.lock();
    let Some(coll) = inner.resources.get(&resource) else {
        return adf_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    if coll.synthetic.is_some() {
        return adf_error(StatusCode::BAD_REQUEST, "a synthetic resource is read-only");
    }
    let key_attr = coll.key_attr.clone();
    if let Some(k) = attrs.get(&key_attr) {
        let k = k.as_str().map_or_else(|| k.to_string(), str::to_owned);
        if coll.rows.contains_key(&SortKey::of(&k)) {
            return adf_error(
                StatusCode::BAD_REQUEST,
                &format!("{key_attr} {k} already exists"),
            );
        }
    } else {
        let next = coll
            .rows
            .keys()
            .filter_map(|k| match k {
                SortKey::Num(n) => Some(*n),
                SortKey::Text(_) => None,
            })
            .max()
            .unwrap_or(300_000_000_000_000)
            + 1;
        attrs.insert(key_attr, next.into());
    }
    let stamp = Value::String(oracle_ts(now));
    attrs.insert("CreationDate".into(), stamp.clone());
    attrs.insert("LastUpdateDate".into(), stamp);
    let json = Value::Object(attrs.into_iter().collect()).to_string();
    match inner.store(&resource, &json, now) {
        Ok(_) => item_response(StatusCode::CREATED, &json),
        Err(e) => adf_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// `PATCH .../<resource>/<key>`: merges the body's attributes into the item and stamps
/// `LastUpdateDate`. The key and who-columns cannot be changed.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    Path((version, resource, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let changes = match accept(&shared, &version, &headers, &body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let now = shared.clock.now();
    let mut inner = shared.lock();
    let Some(coll) = inner.resources.get(&resource) else {
        return adf_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    let key_attr = coll.key_attr.clone();
    let Some(row) = coll.rows.get(&SortKey::of(&key)) else {
        return adf_error(StatusCode::NOT_FOUND, &format!("no {resource} item {key}"));
    };
    let mut attrs: BTreeMap<String, Value> = match serde_json::from_str(row.raw.get()) {
        Ok(a) => a,
        Err(e) => return adf_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    for (k, v) in changes {
        if k == key_attr || k == "CreationDate" || k == "LastUpdateDate" {
            continue;
        }
        attrs.insert(k, v);
    }
    attrs.insert("LastUpdateDate".into(), Value::String(oracle_ts(now)));
    let json = Value::Object(attrs.into_iter().collect()).to_string();
    match inner.store(&resource, &json, now) {
        Ok(_) => item_response(StatusCode::OK, &json),
        Err(e) => adf_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// `PUT /sandbox/oracle/<resource>` (sandbox control, no auth): stores the body exactly as
/// given, timestamps included, so a test or a person at a terminal can stage a late
/// commit or a back-dated change while a pipeline runs.
pub(super) async fn put_raw(
    State(shared): State<Arc<Shared>>,
    Path(resource): Path<String>,
    body: String,
) -> Response {
    let now = shared.clock.now();
    let stored = shared.lock().store(&resource, &body, now);
    match stored {
        Ok(_) => item_response(StatusCode::OK, &body),
        Err(e) if e.starts_with("unknown resource") => adf_error(StatusCode::NOT_FOUND, &e),
        Err(e) => adf_error(StatusCode::BAD_REQUEST, &e),
    }
}
