//! [`SapODataSource`]: one Gateway entity set polled incrementally with the tie-proof
//! cursor, and the CSRF-protected write helper.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::auth::{BasicCredentials, Credentials};
use ml_core::clock::Clock;
use ml_core::cursor::{
    Cursor as _, PageRow, Paging, Position, ReadPlan, WatermarkCursor, fold_page,
};
use ml_core::error::Result;
use ml_core::http::{ApiClient, ErrorModel, Request, Response, TransportError};
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::source::{Page, Source};
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue, SET_COOKIE,
};
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;

use super::error::{ODataError, SapMessage, parse_error, sap_message};
use super::model::{EntitySpec, map_entity};
use super::value::{filter_literal, string_literal};

/// The CSRF header.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How pages continue within a cycle (see the module docs of [`crate::odata`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SapODataPaging {
    /// Follow the server's `__next` link as it is (server-driven paging); when the server
    /// gives none but filled `$top`, continue with `$skip` and the re-read anchor. Trusts
    /// the service's `$skiptoken`: an offset-based one skips a row when a row already
    /// served changes while the chain is read.
    NextLink,
    /// `__next` only says "more": continue with the keyset filter
    /// `(Stamp gt T or (Stamp eq T and Key gt 'K'))`, which rows moving under the read
    /// cannot shift. Needs a service that evaluates `or` across properties.
    Keyset,
    /// The default. `__next` only says "more": continue with `Stamp ge T` and `$skip`,
    /// re-reading the previous page's last row to detect shifts (and re-reading the rows
    /// at `T` when one happened). Needs only `ge`, `$orderby`, `$top` and `$skip`.
    #[default]
    Offset,
}

/// Reads one SAP Gateway OData v2 entity set incrementally (see [`crate::odata`]).
pub struct SapODataSource {
    pub(crate) client: reqwest::Client,
    /// `scheme://host[:port]`.
    pub(crate) origin: String,
    /// `/sap/opu/odata/sap/<SERVICE>/`.
    pub(crate) service_path: String,
    pub(crate) service: String,
    pub(crate) sap_client: String,
    pub(crate) host: String,
    pub(crate) spec: EntitySpec,
    pub(crate) credentials: BasicCredentials,
    pub(crate) cursor: WatermarkCursor,
    pub(crate) paging: SapODataPaging,
    pub(crate) page_size: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) csrf: tokio::sync::Mutex<Option<CsrfSession>>,
}

/// A fetched CSRF token and the session cookies that go with it.
#[derive(Clone)]
pub(crate) struct CsrfSession {
    token: HeaderValue,
    cookies: Option<HeaderValue>,
}

impl fmt::Debug for SapODataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SapODataSource")
            .field("origin", &self.origin)
            .field("service", &self.service)
            .field("entity_set", &self.spec.entity_set)
            .field("sap_client", &self.sap_client)
            .field("credentials", &self.credentials)
            .field("paging", &self.paging)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SapODataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SapOData({}, client={}, {}/{})",
            self.host, self.sap_client, self.service, self.spec.entity_set
        )
    }
}

/// Percent-encodes a query component, keeping what OData literals need readable
/// (`$ ' ( ) , : *`); a space becomes `%20`, never `+` (ICF reads `+` literally in some
/// releases; unconfirmed either way, `%20` is safe in both).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$'(),:*/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The `d` envelope of a collection answer.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    d: &'a RawValue,
}

#[derive(serde::Deserialize)]
#[allow(clippy::struct_field_names)] // `results` is the wire name.
struct Results<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
    #[serde(rename = "__next", default)]
    next: Option<String>,
    #[serde(rename = "__count", default)]
    count: Option<String>,
}

/// Reads `{"d":{"results":[...],"__next":...}}`, or the v1-style `{"d":[...]}`.
fn collection(body: &[u8]) -> serde_json::Result<(Vec<&RawValue>, Option<String>, Option<String>)> {
    let env: Envelope<'_> = serde_json::from_slice(body)?;
    if env.d.get().trim_start().starts_with('[') {
        return Ok((serde_json::from_str(env.d.get())?, None, None));
    }
    let r: Results<'_> = serde_json::from_str(env.d.get())?;
    Ok((r.results, r.next, r.count))
}

/// A write to the service (see [`SapODataSource::write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMethod {
    /// Create (`POST <Set>`).
    Post,
    /// Replace (`PUT <Set>('<key>')`).
    Put,
    /// Partial update (`MERGE <Set>('<key>')`, the v2 verb).
    Merge,
    /// Delete.
    Delete,
}

impl WriteMethod {
    fn method(self) -> Method {
        match self {
            Self::Post => Method::POST,
            Self::Put => Method::PUT,
            // A static, valid token: cannot fail.
            Self::Merge => Method::from_bytes(b"MERGE").unwrap_or(Method::PATCH),
            Self::Delete => Method::DELETE,
        }
    }
}

/// What a successful write answered.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    /// The HTTP status (201 Created, 204 No Content, ...).
    pub status: u16,
    /// The `d` object of the answer, when there was one.
    pub entity: Option<serde_json::Value>,
    /// The `sap-message` header (warnings and infos of a successful call).
    pub message: Option<SapMessage>,
}

/// The error model of one request.
struct Call {
    system: String,
}

impl ErrorModel for Call {
    type Error = ODataError;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<ODataError> {
        if status.is_success() {
            return None;
        }
        let text = String::from_utf8_lossy(body);
        let csrf_required = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("required"));
        if status == StatusCode::FORBIDDEN && csrf_required {
            return Some(ODataError::Csrf {
                system: self.system.clone(),
                message: "x-csrf-token: Required".into(),
            });
        }
        Some(parse_error(&self.system, status, headers, &text, now))
    }

    fn transport_error(&self, err: TransportError) -> ODataError {
        ODataError::Transport {
            system: self.system.clone(),
            class: err.class,
            message: err.message,
        }
    }

    fn credentials_error(&self, err: ml_core::Error) -> ODataError {
        ODataError::Transport {
            system: self.system.clone(),
            class: err.class(),
            message: err.to_string(),
        }
    }
}

impl SapODataSource {
    /// The entity description in use.
    pub fn spec(&self) -> &EntitySpec {
        &self.spec
    }

    /// The page size (`$top`).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The paging in use.
    pub fn paging(&self) -> SapODataPaging {
        self.paging
    }

    fn api(&self) -> ApiClient {
        ApiClient::reqwest(self.client.clone())
            .with_credentials(Credentials::Basic(self.credentials.clone()))
            .with_clock(Arc::clone(&self.clock))
    }

    fn call(&self) -> Call {
        Call {
            system: self.to_string(),
        }
    }

    /// `<origin>/sap/opu/odata/sap/<SERVICE>/`.
    pub fn service_url(&self) -> String {
        format!("{}{}", self.origin, self.service_path)
    }

    /// The `$filter` of a plan (`None`: no restriction).
    pub fn filter(&self, plan: &ReadPlan) -> Option<String> {
        let st = &self.spec.stamp;
        let lit = |t: Timestamp| filter_literal(t, self.spec.stamp_kind);
        let mut parts = Vec::new();
        match (plan.since, &plan.after_key) {
            (Some(s), Some(k)) => parts.push(format!(
                "({st} gt {l} or ({st} eq {l} and {key} gt {kv}))",
                l = lit(s),
                key = self.spec.key,
                kv = string_literal(k)
            )),
            (Some(s), None) => parts.push(format!("{st} ge {}", lit(s))),
            (None, _) => {}
        }
        let ranges: Vec<String> = plan
            .within
            .iter()
            .map(|w| format!("({st} ge {} and {st} le {})", lit(w.lo), lit(w.hi)))
            .collect();
        match ranges.len() {
            0 => {}
            1 => parts.extend(ranges),
            _ => parts.push(format!("({})", ranges.join(" or "))),
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// The URL of the first request of a plan (no server token).
    pub fn query_url(&self, plan: &ReadPlan) -> String {
        let mut q = vec![
            format!("sap-client={}", encode(&self.sap_client)),
            "$format=json".to_owned(),
        ];
        if let Some(f) = self.filter(plan) {
            q.push(format!("$filter={}", encode(&f)));
        }
        q.push(format!(
            "$orderby={}",
            encode(&format!("{} asc,{} asc", self.spec.stamp, self.spec.key))
        ));
        q.push(format!("$top={}", self.page_size));
        if plan.offset > 0 {
            q.push(format!("$skip={}", plan.offset));
        }
        format!(
            "{}{}{}?{}",
            self.origin,
            self.service_path,
            encode(&self.spec.entity_set),
            q.join("&")
        )
    }

    /// Turns a `__next` link into the token kept in the position: its path and query,
    /// on this Gateway. An absolute link naming another host (a Gateway behind a reverse
    /// proxy serves its internal name) is followed on the configured origin: the
    /// credentials never go anywhere else. A link outside the service is refused.
    pub fn next_token(&self, next: &str) -> std::result::Result<String, ODataError> {
        let rel = if let Some(rest) = next
            .strip_prefix("https://")
            .or_else(|| next.strip_prefix("http://"))
        {
            match rest.find('/') {
                Some(i) => rest[i..].to_owned(),
                None => "/".to_owned(),
            }
        } else if next.starts_with('/') {
            next.to_owned()
        } else {
            // Relative to the service root (`PurchaseOrderSet?$skiptoken=10`).
            format!("{}{next}", self.service_path)
        };
        if !rel.starts_with(&self.service_path) || rel.contains(['\r', '\n', '#']) {
            return Err(ODataError::decode(
                &self.to_string(),
                "a `__next` link points outside the service",
            ));
        }
        let (path, query) = rel.split_once('?').unwrap_or((&rel, ""));
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        let has = |name: &str, pairs: &[&str]| {
            pairs.iter().any(|p| {
                p.split('=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case(name))
            })
        };
        // A link without the client would be served from the system's default client.
        let client = format!("sap-client={}", encode(&self.sap_client));
        if !has("sap-client", &pairs) {
            pairs.push(&client);
        }
        if !has("$format", &pairs) && !has("%24format", &pairs) {
            pairs.push("$format=json");
        }
        Ok(format!("{path}?{}", pairs.join("&")))
    }

    /// One GET through ml-core's `ApiClient`, mapped by [`parse_error`].
    async fn get_once(&self, url: &str) -> std::result::Result<Response, ODataError> {
        let request = Request::get(url)
            .map_err(|e| ODataError::config("SAP_ECC_URL", e.to_string()))?
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        self.api().send(&self.call(), request).await
    }

    async fn get(&self, url: &str) -> Result<Response> {
        ml_core::retry::retry(&self.retry, || async {
            self.get_once(url).await.map_err(Into::into)
        })
        .await
    }

    fn log_message(&self, headers: &HeaderMap) {
        if let Some(m) = sap_message(headers) {
            tracing::warn!(source = %self, code = %m.code, severity = %m.severity, message = %m.message, "sap-message");
        }
    }

    fn cursor(&self) -> WatermarkCursor {
        match self.paging {
            SapODataPaging::Keyset => self.cursor.clone().with_paging(Paging::Keyset),
            SapODataPaging::NextLink | SapODataPaging::Offset => {
                self.cursor.clone().with_paging(Paging::AnchoredOffset)
            }
        }
    }

    /// Fetches a CSRF token (`GET` of the service document with `X-CSRF-Token: Fetch`),
    /// keeping the session cookies that go with it.
    async fn fetch_csrf(&self) -> std::result::Result<CsrfSession, ODataError> {
        let url = format!(
            "{}?sap-client={}",
            self.service_url(),
            encode(&self.sap_client)
        );
        let request = Request::get(&url)
            .map_err(|e| ODataError::config("SAP_ECC_URL", e.to_string()))?
            .header(
                HeaderName::from_static(CSRF_HEADER),
                HeaderValue::from_static("Fetch"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.api().send(&self.call(), request).await?;
        let token = response
            .headers
            .get(CSRF_HEADER)
            .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"required"))
            .cloned()
            .ok_or_else(|| ODataError::Csrf {
                system: self.to_string(),
                message: "the service sent no token".into(),
            })?;
        let cookies: Vec<String> = response
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|c| c.split(';').next())
            .map(|c| c.trim().to_owned())
            .filter(|c| c.contains('='))
            .collect();
        let cookies = if cookies.is_empty() {
            None
        } else {
            HeaderValue::from_str(&cookies.join("; ")).ok()
        };
        Ok(CsrfSession { token, cookies })
    }

    /// Sends one write to `path` (relative to the service root: `PurchaseOrderSet`,
    /// `PurchaseOrderSet('4500000001')`) with the CSRF token, fetching one first and
    /// reusing it (with its session cookies) for later writes; a 403 `x-csrf-token:
    /// Required` fetches a fresh token and sends once more. Not retried otherwise: a write
    /// whose answer was lost is in doubt ([`ml_core::ErrorClass::InDoubt`]).
    pub async fn write(
        &self,
        method: WriteMethod,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<WriteOutcome> {
        if path.starts_with('/') || path.contains("://") || path.contains(['?', '#', '\r', '\n']) {
            return Err(ODataError::config("path", "must be relative to the service root").into());
        }
        let mut session = self.csrf.lock().await;
        let mut refreshed = false;
        loop {
            let current = if let Some(s) = session.as_ref() {
                s.clone()
            } else {
                let s = self.fetch_csrf().await?;
                *session = Some(s.clone());
                refreshed = true;
                s
            };
            let url = format!(
                "{}{path}?sap-client={}",
                self.service_url(),
                encode(&self.sap_client)
            );
            let mut request = Request::new(method.method(), &url)
                .map_err(|e| ODataError::config("path", e.to_string()))?
                .header(HeaderName::from_static(CSRF_HEADER), current.token.clone())
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            if let Some(c) = &current.cookies {
                request = request.header(COOKIE, c.clone());
            }
            if let Some(b) = body {
                request = request
                    .json(b)
                    .map_err(|e| ODataError::config("body", e.to_string()))?;
                request
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            match self.api().send(&self.call(), request).await {
                Ok(response) => {
                    let entity = response
                        .json::<serde_json::Value>()
                        .ok()
                        .map(|v| v["d"].clone())
                        .filter(|d| !d.is_null());
                    return Ok(WriteOutcome {
                        status: response.status.as_u16(),
                        entity,
                        message: sap_message(&response.headers),
                    });
                }
                Err(ODataError::Csrf { .. }) if !refreshed => {
                    tracing::debug!(source = %self, "CSRF token refused: fetching a fresh one");
                    *session = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[async_trait]
impl Source for SapODataSource {
    fn kind(&self) -> EntityKind {
        self.spec.kind.clone()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let cursor = self.cursor();
        let plan = cursor.plan(from)?;
        // A token is `<rows served so far in this __next chain>;<path?query>`: when the
        // chain ends having served the whole `$top`, more rows may follow it.
        let (chain_before, url) = match &plan.token {
            Some(t) => {
                let bad = || {
                    ml_core::Error::InvalidPosition(
                        "the saved `__next` token is not on this service".into(),
                    )
                };
                let (n, rel) = t.split_once(';').ok_or_else(bad)?;
                let n: usize = n.parse().map_err(|_| bad())?;
                if !rel.starts_with(&self.service_path) {
                    return Err(bad());
                }
                (n, format!("{}{rel}", self.origin))
            }
            None => (0, self.query_url(&plan)),
        };
        let response = self.get(&url).await?;
        self.log_message(&response.headers);
        let system = self.to_string();
        let (results, next, count) = collection(&response.body).map_err(|e| {
            ODataError::decode(&system, format!("not an OData v2 JSON collection: {e}"))
        })?;
        if let Some(c) = count {
            tracing::debug!(source = %system, count = %c, "__count");
        }
        let next = next.filter(|n| !n.trim().is_empty());
        let rows: Vec<PageRow> = results
            .iter()
            .map(|raw| {
                let m = map_entity(&self.spec, &system, raw);
                PageRow {
                    key: m.key,
                    version: m.version,
                    modified_at: m.modified_at,
                    item: m.item,
                }
            })
            .collect();
        let chain = chain_before + rows.len();
        let server_more = next.is_some() || chain >= self.page_size;
        let token = match (&next, self.paging) {
            (Some(n), SapODataPaging::NextLink) => Some(format!("{chain};{}", self.next_token(n)?)),
            _ => None,
        };
        fold_page(
            &cursor,
            from,
            &plan,
            rows,
            server_more,
            token,
            self.clock.now(),
        )
    }

    async fn healthcheck(&self) -> Result<()> {
        let url = format!(
            "{}{}{}?sap-client={}&$format=json&$top=1",
            self.origin,
            self.service_path,
            encode(&self.spec.entity_set),
            encode(&self.sap_client)
        );
        let response = self.get(&url).await?;
        collection(&response.body).map_err(|e| {
            ODataError::decode(
                &self.to_string(),
                format!("not an OData v2 JSON collection: {e}"),
            )
        })?;
        Ok(())
    }
}
