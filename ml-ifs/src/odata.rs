//! A generic OData v4 client (any v4 server; IFS specifics are opt-in headers): query
//! options, literals, collection pages with `@odata.nextLink` followed opaquely,
//! `Prefer: odata.maxpagesize`, entities with their `@odata.etag`, and bound actions with
//! `If-Match`.
//!
//! ```
//! use ml_ifs::odata::{ODataQuery, literal};
//!
//! let t: jiff::Timestamp = "2026-03-01T10:00:00+01:00".parse().unwrap();
//! let q = ODataQuery::new()
//!     .filter(format!("Company eq {} and ModifiedDateTime ge {}", literal::string("10"), literal::date_time_offset(t)))
//!     .select(["OrderNo", "Objstate"])
//!     .order_by(["ModifiedDateTime asc", "OrderNo asc"])
//!     .top(500);
//! assert_eq!(
//!     q.to_query_string(),
//!     "$filter=Company%20eq%20'10'%20and%20ModifiedDateTime%20ge%202026-03-01T09:00:00Z\
//!      &$select=OrderNo,Objstate&$orderby=ModifiedDateTime%20asc,OrderNo%20asc&$top=500"
//! );
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use ::http::header::{ACCEPT, HeaderName, HeaderValue};
use ::http::{HeaderMap, Method, StatusCode};
use jiff::Timestamp;
use ml_core::http::{ApiClient, ErrorModel, Request, Response, TransportError};
use serde_json::value::RawValue;

use crate::error::{IfsError, parse_error};

/// The largest `odata.maxpagesize` the client asks for (IFS's often-quoted cap; unconfirmed).
pub const MAX_PAGE_SIZE: usize = 5000;
/// `Accept` for reads: full metadata (every entity carries `@odata.etag`) and
/// `IEEE754Compatible=true` (Edm.Decimal and Edm.Int64 as JSON strings: no float ever).
pub const ACCEPT_JSON: &str = "application/json;odata.metadata=full;IEEE754Compatible=true";
/// `Content-Type` for bodies sent.
pub const CONTENT_JSON: &str = "application/json;IEEE754Compatible=true";
/// The IFS header that makes the server read and write timestamps as UTC.
pub const TIME_ZONE_AWARE_HEADER: &str = "x-ifs-time-zone-aware-request";

/// OData literals for `$filter` (OData v4 URL conventions §5.1.1).
pub mod literal {
    use jiff::Timestamp;

    /// `'text'` with `'` doubled.
    pub fn string(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    /// An Edm.DateTimeOffset literal: unquoted RFC 3339 in UTC (`2026-03-01T09:00:00Z`,
    /// fractional seconds only when present).
    pub fn date_time_offset(t: Timestamp) -> String {
        t.to_string()
    }

    /// An Edm.Date literal, unquoted (`2026-03-01`).
    pub fn date(d: jiff::civil::Date) -> String {
        d.to_string()
    }
}

/// Percent-encodes a query value: unreserved characters and `$'(),:*` stay, everything
/// else (space, `+`, `&`, `=`, `#`, `%`, non-ASCII) is encoded, so a `+` in a
/// DateTimeOffset literal never reaches the server as a space.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$'(),:*/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// System query options of one collection request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ODataQuery {
    filter: Option<String>,
    select: Vec<String>,
    order_by: Vec<String>,
    top: Option<usize>,
    skip: Option<u64>,
    max_page_size: Option<usize>,
}

impl ODataQuery {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// `$filter`.
    #[must_use]
    pub fn filter(mut self, f: impl Into<String>) -> Self {
        let f = f.into();
        self.filter = (!f.trim().is_empty()).then_some(f);
        self
    }

    /// `$select`.
    #[must_use]
    pub fn select<I: IntoIterator<Item = S>, S: Into<String>>(mut self, attrs: I) -> Self {
        self.select = attrs.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `$select` is set.
    pub fn has_select(&self) -> bool {
        !self.select.is_empty()
    }

    /// The same query without `$select` (whole entities).
    #[must_use]
    pub fn without_select(mut self) -> Self {
        self.select.clear();
        self
    }

    /// `$orderby` (`Attr asc`, `Attr desc`).
    #[must_use]
    pub fn order_by<I: IntoIterator<Item = S>, S: Into<String>>(mut self, terms: I) -> Self {
        self.order_by = terms.into_iter().map(Into::into).collect();
        self
    }

    /// `$top`.
    #[must_use]
    pub fn top(mut self, n: usize) -> Self {
        self.top = Some(n);
        self
    }

    /// `$skip`.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = (n > 0).then_some(n);
        self
    }

    /// Asks the server for pages of at most `n` (`Prefer: odata.maxpagesize`, clamped to
    /// [`MAX_PAGE_SIZE`]); a hint the server may ignore.
    #[must_use]
    pub fn max_page_size(mut self, n: usize) -> Self {
        self.max_page_size = Some(n.clamp(1, MAX_PAGE_SIZE));
        self
    }

    /// The `$filter`, if any.
    pub fn filter_text(&self) -> Option<&str> {
        self.filter.as_deref()
    }

    /// The `$top`, if any.
    pub fn top_value(&self) -> Option<usize> {
        self.top
    }

    /// The encoded query string (without `?`).
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.filter {
            parts.push(format!("$filter={}", encode_component(f)));
        }
        if !self.select.is_empty() {
            parts.push(format!(
                "$select={}",
                encode_component(&self.select.join(","))
            ));
        }
        if !self.order_by.is_empty() {
            parts.push(format!(
                "$orderby={}",
                encode_component(&self.order_by.join(","))
            ));
        }
        if let Some(t) = self.top {
            parts.push(format!("$top={t}"));
        }
        if let Some(s) = self.skip {
            parts.push(format!("$skip={s}"));
        }
        parts.join("&")
    }
}

/// One page of a collection.
#[derive(Debug)]
pub struct CollectionPage {
    /// The entities, each its exact JSON text (amounts keep every digit).
    pub items: Vec<Box<RawValue>>,
    /// `@odata.nextLink`: absent on the last page. Opaque: follow it as given.
    pub next_link: Option<String>,
    /// `@odata.count`, when asked for.
    pub count: Option<u64>,
    /// The page size the server applied (`Preference-Applied: odata.maxpagesize=N`).
    pub applied_page_size: Option<usize>,
}

#[derive(serde::Deserialize)]
struct Envelope {
    value: Vec<Box<RawValue>>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.count", default, deserialize_with = "count")]
    count: Option<u64>,
}

fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    // `IEEE754Compatible=true` makes Edm.Int64 a string.
    let v: Option<serde_json::Value> = serde::Deserialize::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

/// One entity read by key.
#[derive(Debug)]
pub struct Entity {
    /// Its exact JSON text.
    pub raw: Box<RawValue>,
    /// `@odata.etag` (or the `ETag` header): what `If-Match` must carry.
    pub etag: Option<String>,
}

impl Entity {
    /// The entity parsed.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(self.raw.get()).unwrap_or_default()
    }
}

/// What a bound action answered.
#[derive(Debug, Clone)]
pub struct ActionResult {
    /// The HTTP status (200 with a body, 204 without).
    pub status: u16,
    /// The new `ETag`, when the server sent one.
    pub etag: Option<String>,
    /// The body (empty for 204).
    pub body: String,
}

/// An OData v4 service root, read through ml-core's [`ApiClient`] (credentials, one token
/// refresh after a 401, bounded bodies). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ODataClient {
    api: ApiClient,
    system: String,
    headers: HeaderMap,
}

impl ODataClient {
    /// A client sending `OData-Version: 4.0`, `OData-MaxVersion: 4.0` and
    /// [`ACCEPT_JSON`]; `system` names the service in errors.
    pub fn new(api: ApiClient, system: impl Into<String>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("odata-version"),
            HeaderValue::from_static("4.0"),
        );
        headers.insert(
            HeaderName::from_static("odata-maxversion"),
            HeaderValue::from_static("4.0"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_JSON));
        Self {
            api,
            system: system.into(),
            headers,
        }
    }

    /// Sends `name: value` with every request (IFS: [`TIME_ZONE_AWARE_HEADER`]).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The system name used in errors.
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The underlying client.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    fn request(&self, method: Method, url: &str) -> Result<Request, IfsError> {
        let mut r = Request::new(method, url).map_err(|e| IfsError::Decode {
            system: self.system.clone(),
            message: format!("bad URL: {e}"),
        })?;
        for (k, v) in &self.headers {
            r = r.header(k.clone(), v.clone());
        }
        Ok(r)
    }

    async fn send(&self, request: Request) -> Result<Response, IfsError> {
        let model = Model {
            system: &self.system,
        };
        self.api.send(&model, request).await
    }

    /// Reads the first page of `collection_url` with `query`.
    pub async fn get_collection(
        &self,
        collection_url: &str,
        query: &ODataQuery,
    ) -> Result<CollectionPage, IfsError> {
        let qs = query.to_query_string();
        let url = if qs.is_empty() {
            collection_url.to_owned()
        } else {
            format!("{collection_url}?{qs}")
        };
        self.get_page(&url, query.max_page_size).await
    }

    /// Follows an `@odata.nextLink` exactly as the server gave it (relative links are
    /// resolved against `base`); refused when it points at another host than `base`.
    pub async fn follow(
        &self,
        base: &str,
        next_link: &str,
        max_page_size: Option<usize>,
    ) -> Result<CollectionPage, IfsError> {
        let base_url = url::Url::parse(base).map_err(|e| IfsError::Decode {
            system: self.system.clone(),
            message: format!("bad base URL: {e}"),
        })?;
        let url = base_url.join(next_link).map_err(|e| IfsError::Decode {
            system: self.system.clone(),
            message: format!("@odata.nextLink is not a URL: {e}"),
        })?;
        if url.origin() != base_url.origin() {
            return Err(IfsError::Decode {
                system: self.system.clone(),
                message: "@odata.nextLink points at another host; not followed".into(),
            });
        }
        self.get_page(url.as_str(), max_page_size).await
    }

    async fn get_page(
        &self,
        url: &str,
        max_page_size: Option<usize>,
    ) -> Result<CollectionPage, IfsError> {
        let mut request = self.request(Method::GET, url)?;
        if let Some(n) = max_page_size
            && let Ok(v) = HeaderValue::from_str(&format!("odata.maxpagesize={n}"))
        {
            request = request.header(HeaderName::from_static("prefer"), v);
        }
        let response = self.send(request).await?;
        let applied_page_size = response
            .headers
            .get("preference-applied")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
            })
            .and_then(|n| n.trim().parse().ok());
        let env: Envelope =
            serde_json::from_slice(&response.body).map_err(|e| IfsError::Decode {
                system: self.system.clone(),
                message: format!("not an OData collection: {e}"),
            })?;
        Ok(CollectionPage {
            items: env.value,
            next_link: env.next_link.filter(|l| !l.trim().is_empty()),
            count: env.count,
            applied_page_size,
        })
    }

    /// Reads one entity (`Set(Key='A')`) with its ETag.
    pub async fn get_entity(&self, entity_url: &str) -> Result<Entity, IfsError> {
        #[derive(serde::Deserialize)]
        struct Tag {
            #[serde(rename = "@odata.etag")]
            etag: Option<String>,
        }
        let response = self.send(self.request(Method::GET, entity_url)?).await?;
        let raw: Box<RawValue> =
            serde_json::from_slice(&response.body).map_err(|e| IfsError::Decode {
                system: self.system.clone(),
                message: format!("not an OData entity: {e}"),
            })?;
        let tag: Tag = serde_json::from_str(raw.get()).map_err(|e| IfsError::Decode {
            system: self.system.clone(),
            message: format!("not an OData entity: {e}"),
        })?;
        let header = response
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Entity {
            raw,
            etag: tag.etag.or(header),
        })
    }

    /// POSTs a bound action (`Set(keys)/Namespace.Action`) with `If-Match: etag` and `body`.
    /// Sent once: a stale ETag is HTTP 412, a missing one 428 (both permanent errors).
    pub async fn invoke_action(
        &self,
        action_url: &str,
        etag: &str,
        body: &serde_json::Value,
    ) -> Result<ActionResult, IfsError> {
        let if_match = HeaderValue::from_str(etag).map_err(|_| IfsError::Decode {
            system: self.system.clone(),
            message: "the ETag cannot be sent as a header".into(),
        })?;
        let request = self
            .request(Method::POST, action_url)?
            .header(::http::header::IF_MATCH, if_match)
            .header(
                HeaderName::from_static("prefer"),
                HeaderValue::from_static("return=minimal"),
            )
            .body(CONTENT_JSON, body.to_string().into_bytes())
            .idempotent(false);
        let response = self.send(request).await?;
        Ok(ActionResult {
            status: response.status.as_u16(),
            etag: response
                .headers
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: response.text().into_owned(),
        })
    }
}

/// Runs `op` again after a retryable [`IfsError`] that is an answer the server gave
/// without acting (429, 503; `MI_MODIFIED_ERROR`), honouring `Retry-After` (capped at
/// `max_wait`), at most `attempts` times in all. Transport errors are not retried: an
/// action may have been applied.
pub async fn retry_refusals<T, F, Fut>(
    attempts: u32,
    max_wait: Duration,
    mut op: F,
) -> Result<T, IfsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IfsError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match op().await {
            Err(e)
                if n < attempts
                    && matches!(e.status(), Some(429 | 503))
                    && e.class().is_retryable() =>
            {
                let wait = e
                    .class()
                    .retry_after()
                    .unwrap_or(Duration::from_millis(250 * u64::from(n)))
                    .min(max_wait);
                tracing::debug!(error = %e, wait_ms = wait.as_millis(), "retrying a refused request");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

struct Model<'a> {
    system: &'a str,
}

impl ErrorModel for Model<'_> {
    type Error = IfsError;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<IfsError> {
        if status.is_success() {
            return None;
        }
        Some(parse_error(
            self.system,
            status,
            headers,
            &String::from_utf8_lossy(body),
            now,
        ))
    }

    fn transport_error(&self, err: TransportError) -> IfsError {
        IfsError::Transport {
            system: self.system.to_owned(),
            class: err.class,
            message: err.message,
        }
    }

    fn credentials_error(&self, err: ml_core::Error) -> IfsError {
        IfsError::Token {
            class: err.class(),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_encoding() {
        assert_eq!(literal::string("O'Brien"), "'O''Brien'");
        let t: Timestamp = "2026-03-01T10:00:00.5+01:00".parse().expect("t");
        assert_eq!(literal::date_time_offset(t), "2026-03-01T09:00:00.5Z");
        assert_eq!(
            encode_component("T ge 2026-03-01T10:00:00+01:00 & x=#"),
            "T%20ge%202026-03-01T10:00:00%2B01:00%20%26%20x%3D%23"
        );
        let q = ODataQuery::new().max_page_size(100_000).skip(0);
        assert_eq!(q.max_page_size, Some(MAX_PAGE_SIZE));
        assert_eq!(q.to_query_string(), "");
    }

    #[test]
    fn envelope_reads_count_as_string_or_number() {
        let e: Envelope = serde_json::from_str(
            r#"{"@odata.context":"x","value":[{"A":"1.10"}],"@odata.count":"12","@odata.nextLink":"http://h/x?$skiptoken=1"}"#,
        )
        .expect("env");
        assert_eq!(e.count, Some(12));
        assert_eq!(e.value[0].get(), r#"{"A":"1.10"}"#);
        assert!(e.next_link.is_some());
    }
}
