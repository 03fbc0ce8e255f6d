//! [`OracleFusionSource`]: one REST resource polled incrementally with the tie-proof cursor.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use ml_core::clock::Clock;
use ml_core::cursor::{
    Cursor, PageRow, Paging, Position, ReadPlan, WatermarkCursor, Window, fold_page,
};
use ml_core::error::Result;
use ml_core::http::{ApiClient, ErrorModel, Request, TransportError};
use ml_core::money::Currency;
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::source::{Page, Source};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::auth::Auth;
use crate::error::{OracleFusionError, parse_error};
use crate::model::map_item;
use crate::resource::ResourceSpec;

/// The header that switches `q` to the expression language.
pub const FRAMEWORK_HEADER: &str = "REST-Framework-Version";

/// Reads one Oracle Fusion REST resource incrementally (see the crate docs).
pub struct OracleFusionSource {
    pub(crate) client: reqwest::Client,
    pub(crate) collection_url: String,
    pub(crate) host: String,
    pub(crate) spec: ResourceSpec,
    pub(crate) auth: Auth,
    pub(crate) cursor: WatermarkCursor,
    /// Set when the pod answered a query using `or` (keyset, or a sweep of several windows)
    /// with 400: anchored offsets and one window a request from then on.
    pub(crate) keyset_rejected: AtomicBool,
    /// How `q` writes date-times ([`DateLiteral`]'s index).
    pub(crate) date_literal: AtomicU8,
    /// Whether that form is known to work (configured, or a dated query succeeded).
    pub(crate) date_settled: AtomicBool,
    /// The attributes the pod has (`fields` leaves out the optional ones it lacks).
    pub(crate) attributes: crate::attributes::Attributes,
    pub(crate) page_size: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tz: TimeZone,
    pub(crate) use_fields: bool,
    pub(crate) default_currency: Option<Currency>,
}

impl fmt::Debug for OracleFusionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OracleFusionSource")
            .field("collection_url", &self.collection_url)
            .field("resource", &self.spec.path)
            .field("auth", &self.auth)
            .field("page_size", &self.page_size)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for OracleFusionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OracleFusion({}, {})", self.host, self.spec.path)
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    items: Vec<Box<RawValue>>,
    #[serde(rename = "hasMore", default)]
    has_more: bool,
}

/// How `q` writes a date-time: RFC 3339 in UTC with `Z` and only the fractional digits
/// needed, quoted one of three ways. Public clients disagree on the form and which ones a
/// pod takes is unconfirmed, so the source starts with [`DateLiteral::SingleQuoted`] and,
/// when a pod answers a dated query with 400 before any dated query worked, tries the
/// others and keeps the first it accepts (`ORACLE_FUSION_DATE_LITERAL` pins one instead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DateLiteral {
    /// `LastUpdateDate >= '2026-03-20T14:53:51.123Z'` (the default).
    #[default]
    SingleQuoted,
    /// `LastUpdateDate >= "2026-03-20T14:53:51.123Z"`.
    DoubleQuoted,
    /// `LastUpdateDate >= 2026-03-20T14:53:51.123Z`.
    Bare,
}

impl DateLiteral {
    /// Every form, in the order they are tried.
    pub const ALL: [Self; 3] = [Self::SingleQuoted, Self::DoubleQuoted, Self::Bare];

    /// The literal for `t`: UTC, whole seconds or milliseconds (`.SSS`, what the pod
    /// serves; never a trimmed `.5`).
    pub fn write(self, t: Timestamp) -> String {
        let t = q_timestamp(t);
        match self {
            Self::SingleQuoted => format!("'{t}'"),
            Self::DoubleQuoted => format!("\"{t}\""),
            Self::Bare => t,
        }
    }

    /// The configuration value: `single`, `double` or `bare`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SingleQuoted => "single",
            Self::DoubleQuoted => "double",
            Self::Bare => "bare",
        }
    }

    /// The form a configuration value names (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name.trim()))
    }

    pub(crate) fn index(self) -> u8 {
        match self {
            Self::SingleQuoted => 0,
            Self::DoubleQuoted => 1,
            Self::Bare => 2,
        }
    }

    fn from_index(i: u8) -> Self {
        Self::ALL[usize::from(i).min(2)]
    }
}

/// `2026-03-20T14:53:51Z`, or `2026-03-20T14:53:51.500Z` with a fraction (milliseconds,
/// the pod's precision; a finer fraction is cut to them, which only widens `>=` and `>`).
fn q_timestamp(t: Timestamp) -> String {
    if t.subsec_nanosecond() == 0 {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// The `q` lower bound of a cycle: `LastUpdateDate >= '2026-03-20T14:53:51.123Z'`.
pub fn q_since(attr: &str, since: Timestamp, date: DateLiteral) -> String {
    format!("{attr} >= {}", date.write(since))
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The keyset continuation filter: rows after (`since`, `key`) in (timestamp, key) order,
/// `LastUpdateDate > 'T' or (LastUpdateDate = 'T' and InvoiceId > 300100)`. A numeric key is
/// written bare so the pod compares numbers (as it sorts them); anything else is quoted
/// with `'` doubled.
pub fn q_after(
    attr: &str,
    since: Timestamp,
    key_attr: &str,
    key: &str,
    numeric: bool,
    date: DateLiteral,
) -> String {
    let literal = if numeric && is_integer(key) {
        key.to_owned()
    } else {
        format!("'{}'", key.replace('\'', "''"))
    };
    let since = date.write(since);
    format!("{attr} > {since} or ({attr} = {since} and {key_attr} > {literal})")
}

/// The sweep restriction of a plan ([`ReadPlan::within`]): `LastUpdateDate >= 'a' and
/// LastUpdateDate <= 'b'`, several ranges joined by `or` and grouped; `None` when empty.
pub fn q_within(attr: &str, within: &[Window], date: DateLiteral) -> Option<String> {
    let range = |w: &Window| {
        format!(
            "{attr} >= {} and {attr} <= {}",
            date.write(w.lo),
            date.write(w.hi)
        )
    };
    match within {
        [] => None,
        [one] => Some(range(one)),
        many => Some(format!(
            "({})",
            many.iter()
                .map(|w| format!("({})", range(w)))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
}

/// Whether a plan's filter needs `or` (a keyset continuation, or a sweep of several
/// windows): a pod that refuses it (400) is read with anchored offsets and one window a
/// request from then on.
fn uses_or(plan: &ReadPlan) -> bool {
    plan.after_key.is_some() || plan.within.len() > 1
}

/// Whether a plan's filter writes a date-time literal.
fn dated(plan: &ReadPlan) -> bool {
    plan.since.is_some() || !plan.within.is_empty()
}

impl OracleFusionSource {
    /// The resource description in use.
    pub fn spec(&self) -> &ResourceSpec {
        &self.spec
    }

    /// The page size (`limit`).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// How `q` writes date-times now: the configured form, or the one this pod accepted.
    pub fn date_literal(&self) -> DateLiteral {
        DateLiteral::from_index(self.date_literal.load(Ordering::Relaxed))
    }

    /// The paging in use: the configured one, or anchored offsets after the pod refused a
    /// keyset query.
    pub fn paging(&self) -> Paging {
        if self.keyset_rejected.load(Ordering::Relaxed) {
            Paging::AnchoredOffset
        } else {
            self.cursor.paging()
        }
    }

    fn cursor(&self) -> WatermarkCursor {
        let cursor = self.cursor.clone().with_paging(self.paging());
        if self.keyset_rejected.load(Ordering::Relaxed) {
            cursor.with_sweep_ranges(1)
        } else {
            cursor
        }
    }

    /// The query parameters of one page request.
    pub fn page_query(&self, plan: &ReadPlan, limit: usize) -> Vec<(&'static str, String)> {
        let mut q = vec![("onlyData", "true".to_owned())];
        let date = self.date_literal();
        let filter = match (plan.since, &plan.after_key) {
            (Some(s), Some(k)) => Some(q_after(
                &self.spec.timestamp,
                s,
                &self.spec.key,
                k,
                self.spec.key_is_number,
                date,
            )),
            (Some(s), None) => Some(q_since(&self.spec.timestamp, s, date)),
            (None, _) => None,
        };
        match (filter, q_within(&self.spec.timestamp, &plan.within, date)) {
            (Some(f), Some(w)) if plan.after_key.is_some() => {
                q.push(("q", format!("({f}) and {w}")));
            }
            (Some(f), Some(w)) => q.push(("q", format!("{f} and {w}"))),
            (Some(f), None) | (None, Some(f)) => q.push(("q", f)),
            (None, None) => {}
        }
        let offset = plan.offset;
        q.push((
            "orderBy",
            format!("{}:asc,{}:asc", self.spec.timestamp, self.spec.key),
        ));
        q.push(("limit", limit.to_string()));
        q.push(("offset", offset.to_string()));
        if self.use_fields {
            q.push(("fields", self.fields_value()));
        } else if let Some(expand) = self.spec.expand_param() {
            // Without `fields`, children come only as links unless expanded.
            q.push(("expand", expand));
        }
        q
    }

    /// One GET of `url` through ml-core's `ApiClient` (credentials, one token refresh
    /// after a 401, bounded body), its errors mapped by [`parse_error`].
    pub(crate) async fn get_from(
        &self,
        url: &str,
        query: &[(&'static str, String)],
        filtered: bool,
    ) -> Result<String> {
        let api = ApiClient::reqwest(self.client.clone())
            .with_credentials(self.auth.credentials())
            .with_clock(Arc::clone(&self.clock));
        let request = Request::get(url)?
            .query(query)
            .header(
                HeaderName::from_static("rest-framework-version"),
                HeaderValue::from_static("2"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        let call = Call {
            source: self,
            system: self.to_string(),
            filtered,
            fields: query.iter().any(|(k, _)| *k == "fields"),
        };
        let response = api.send(&call, request).await?;
        String::from_utf8(response.body).map_err(|_| {
            OracleFusionError::Decode {
                system: call.system,
                message: "the answer is not UTF-8".into(),
            }
            .into()
        })
    }

    async fn get(&self, query: &[(&'static str, String)], filtered: bool) -> Result<String> {
        ml_core::retry::retry(&self.retry, || {
            self.get_from(&self.collection_url, query, filtered)
        })
        .await
    }

    /// Reads one page. A 400 means, in this order: an attribute the pod lacks (when `fields`
    /// is sent: the pod's attributes are learned again and the page asked again while that
    /// changes `fields`); for a filter using `or`, that the pod cannot express it (anchored
    /// offsets from then on); for another dated filter, until one dated query has worked, a
    /// date-time form the pod does not take (the other forms are tried, and the first
    /// accepted kept).
    async fn get_page(&self, plan: &ReadPlan) -> Result<String> {
        let keyset = uses_or(plan);
        let dated = dated(plan);
        self.attributes.take_bad_request();
        let configured = self.date_literal();
        // A 400 to a query with `or` is taken as `or` refused first (the anchored query
        // that follows has none): forms are probed only on queries without it.
        let probe = dated && !keyset && !self.date_settled.load(Ordering::Relaxed);
        let mut untried: Vec<DateLiteral> = if probe {
            DateLiteral::ALL
                .into_iter()
                .filter(|d| *d != configured)
                .collect()
        } else {
            Vec::new()
        };
        let mut first_refusal = None;
        // Each 400 may name one more attribute the pod lacks (header or line): learn and
        // send again while that changes what is asked, a bounded number of times.
        let mut relearned = 0;
        loop {
            let query = self.page_query(plan, self.page_size);
            let res = self.get(&query, keyset || dated).await;
            if res.is_ok() {
                if dated {
                    self.settle_date_literal(configured);
                }
                return res;
            }
            let refused = self.attributes.take_bad_request();
            if let Some(body) = &refused {
                if relearned < MAX_RELEARN && self.relearn_attributes(body).await? {
                    relearned += 1;
                    continue;
                }
                if !untried.is_empty() {
                    let next = untried.remove(0);
                    self.date_literal.store(next.index(), Ordering::Relaxed);
                    first_refusal.get_or_insert(res);
                    continue;
                }
            }
            if first_refusal.is_some() {
                // No other form got further: back to the configured one.
                self.date_literal
                    .store(configured.index(), Ordering::Relaxed);
            }
            if refused.is_none() {
                // Not a 400 (a 503 after the retries, say): the form is still unknown.
                return res;
            }
            if keyset {
                self.refuse_keyset();
            }
            // The configured form's own answer says best what the pod refused.
            return first_refusal.unwrap_or(res);
        }
    }

    fn refuse_keyset(&self) {
        tracing::warn!(
            source = %self,
            "the pod refused a query using `or` (400): using anchored offsets, one window a request"
        );
        self.keyset_rejected.store(true, Ordering::Relaxed);
    }

    /// A dated query worked: its date-time form is this pod's from now on.
    fn settle_date_literal(&self, configured: DateLiteral) {
        if self.date_settled.swap(true, Ordering::Relaxed) {
            return;
        }
        let now = self.date_literal();
        if now != configured {
            // The `or` query refused before may have been refused for its date-times: keyset
            // paging is tried again with this form (a second 400 settles it).
            self.keyset_rejected.store(false, Ordering::Relaxed);
            tracing::warn!(
                source = %self,
                form = now.name(),
                "the pod refused date-times written {} (400) and takes them {}: set \
                 ORACLE_FUSION_DATE_LITERAL={} (setting `date_literal`) to skip the probe",
                configured.name(),
                now.name(),
                now.name()
            );
        }
    }
}

/// Reads sent again within one page after learning from a 400.
const MAX_RELEARN: u32 = 8;

/// One request's error model: [`parse_error`], and the 400 noted for the caller to read
/// (see `get_page`).
struct Call<'a> {
    source: &'a OracleFusionSource,
    system: String,
    /// The query uses `or` (keyset, or a sweep of several windows) or writes a date-time.
    filtered: bool,
    /// The query names attributes (`fields`): a 400 may mean the pod lacks one.
    fields: bool,
}

impl ErrorModel for Call<'_> {
    type Error = ml_core::Error;

    fn parse_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: Timestamp,
    ) -> Option<ml_core::Error> {
        if status.is_success() {
            return None;
        }
        let body = String::from_utf8_lossy(body);
        if (self.fields || self.filtered) && status == StatusCode::BAD_REQUEST {
            // An attribute this pod lacks, a date-time form or `or` it does not take: the
            // caller finds out which.
            self.source.attributes.note_bad_request(&body);
        }
        Some(parse_error(&self.system, status, headers, &body, now).into())
    }

    fn transport_error(&self, err: TransportError) -> ml_core::Error {
        OracleFusionError::Transport {
            system: self.system.clone(),
            class: err.class,
            message: err.message,
        }
        .into()
    }

    fn credentials_error(&self, err: ml_core::Error) -> ml_core::Error {
        err
    }
}

#[async_trait]
impl Source for OracleFusionSource {
    fn kind(&self) -> EntityKind {
        self.spec.kind.clone()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        let mut cursor = self.cursor();
        let mut plan = cursor.plan(from)?;
        // An anchor that is not a number where the key is one (a rejected item without a
        // key ends the page) cannot be compared by the pod: read this page by offset.
        if plan
            .after_key
            .as_deref()
            .is_some_and(|k| self.spec.key_is_number && !is_integer(k))
        {
            cursor = cursor.with_paging(Paging::AnchoredOffset);
            plan = cursor.plan(from)?;
        }
        self.ensure_attributes().await?;
        let body = match self.get_page(&plan).await {
            // The pod cannot express `or`: the same position, read by offset and one window
            // at a time.
            Err(_) if uses_or(&plan) && self.keyset_rejected.load(Ordering::Relaxed) => {
                cursor = self.cursor();
                plan = cursor.plan(from)?;
                self.get_page(&plan).await?
            }
            other => other?,
        };
        let env: Envelope = serde_json::from_str(&body).map_err(|e| OracleFusionError::Decode {
            system: self.to_string(),
            message: format!("not a collection envelope: {e}"),
        })?;
        let system = self.to_string();
        let spec = self.mapping_spec();
        let rows: Vec<PageRow> = env
            .items
            .iter()
            .map(|raw| {
                let m = map_item(&spec, &system, &self.tz, self.default_currency, raw);
                PageRow {
                    key: m.key,
                    version: m.version,
                    modified_at: m.modified_at,
                    item: m.item,
                }
            })
            .collect();
        let server_more = env.has_more;
        drop(env);
        fold_page(
            &cursor,
            from,
            &plan,
            rows,
            server_more,
            None,
            self.clock.now(),
        )
    }

    async fn healthcheck(&self) -> Result<()> {
        // A pod lacking a required attribute fails the check, naming it.
        self.ensure_attributes().await?;
        let mut query = vec![("onlyData", "true".to_owned()), ("limit", "1".to_owned())];
        if self.use_fields {
            query.push(("fields", self.spec.key.clone()));
        }
        let body = self.get(&query, false).await?;
        serde_json::from_str::<Envelope>(&body).map_err(|e| OracleFusionError::Decode {
            system: self.to_string(),
            message: format!("not a collection envelope: {e}"),
        })?;
        Ok(())
    }
}
