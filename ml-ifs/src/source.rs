//! [`IfsSource`]: one entity set polled incrementally with the tie-proof cursor.
//!
//! Paging: IFS pages by offset (`$skiptoken` is an offset), so following
//! `@odata.nextLink` across requests skips a row whenever a served row is edited (it
//! moves to the end) or a row is inserted in front between two pages. The source
//! therefore never continues through a nextLink: each page is a fresh keyset query,
//! `ModifiedDateTime gt T or (ModifiedDateTime eq T and <keys after the last row>)`
//! ordered by stamp and keys, bounded by `$top` and `Prefer: odata.maxpagesize`; the
//! nextLink only says that more rows exist. With [`Paging::AnchoredOffset`] (for a
//! service that refuses the disjunction) it uses `ge T` with `$skip` and re-checks its
//! anchor. Late commits are caught by the cursor's overlap and sweep windows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use async_trait::async_trait;
use ml_core::clock::Clock;
use ml_core::cursor::{Cursor, PageRow, Paging, Position, ReadPlan, WatermarkCursor, fold_page};
use ml_core::error::Result;
use ml_core::record::EntityKind;
use ml_core::retry::RetryPolicy;
use ml_core::source::{Page, Source};

use crate::history::ChangeDetection;
use crate::model::map_item;
use crate::odata::{CollectionPage, ODataClient, ODataQuery, literal};
use crate::resource::ResourceSpec;

/// Reads one IFS entity set incrementally (see the module docs).
pub struct IfsSource {
    pub(crate) odata: ODataClient,
    pub(crate) collection_url: String,
    pub(crate) host: String,
    pub(crate) spec: ResourceSpec,
    pub(crate) company: Option<String>,
    pub(crate) cursor: WatermarkCursor,
    pub(crate) page_size: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) use_select: bool,
    /// Set once the service refused a `$select` (400): an attribute asked for does not
    /// exist on this release or tailoring. Whole entities are read from then on, so
    /// attributes present are mapped and absent ones are simply missing.
    pub(crate) select_refused: AtomicBool,
    pub(crate) change_detection: ChangeDetection,
}

impl fmt::Debug for IfsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfsSource")
            .field("collection_url", &self.collection_url)
            .field("company", &self.company)
            .field("odata", &self.odata)
            .field("page_size", &self.page_size)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for IfsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ifs({}, {})", self.host, self.spec.path())
    }
}

/// `(a) or (b)` grouping helper.
fn group(s: &str) -> String {
    format!("({s})")
}

/// The keyset continuation on the keys after `values` (lexicographic, key order):
/// `k1 gt v1 or (k1 eq v1 and (k2 gt v2))`. `None` when a value cannot be written.
fn keys_after(spec: &ResourceSpec, values: &[String]) -> Option<String> {
    let mut out: Option<String> = None;
    for (k, v) in spec.keys.iter().zip(values).rev() {
        let lit = k.literal(v)?;
        out = Some(match out {
            None => format!("{} gt {lit}", k.name),
            Some(rest) => format!("{n} gt {lit} or ({n} eq {lit} and ({rest}))", n = k.name),
        });
    }
    out
}

/// The cursor's part of a page filter on the stamp `m`: `m gt T or (m eq T and
/// <after>)` (keyset, `after` = the keys after the anchor row) or `m ge T`, and the sweep
/// windows. Shared by the stamp and history-log modes.
pub(crate) fn stamp_filter(m: &str, plan: &ReadPlan, after: Option<String>) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(since) = plan.since {
        let t = literal::date_time_offset(since);
        parts.push(match after {
            Some(a) => group(&format!("{m} gt {t} or ({m} eq {t} and ({a}))")),
            None => format!("{m} ge {t}"),
        });
    }
    match plan.within.as_slice() {
        [] => {}
        windows => {
            let ranges: Vec<String> = windows
                .iter()
                .map(|w| {
                    format!(
                        "{m} ge {} and {m} le {}",
                        literal::date_time_offset(w.lo),
                        literal::date_time_offset(w.hi)
                    )
                })
                .collect();
            if let [one] = ranges.as_slice() {
                parts.push(one.clone());
            } else {
                parts.push(group(
                    &ranges
                        .iter()
                        .map(|r| group(r))
                        .collect::<Vec<_>>()
                        .join(" or "),
                ));
            }
        }
    }
    parts
}

impl IfsSource {
    /// How changes are found.
    pub fn change_detection(&self) -> &ChangeDetection {
        &self.change_detection
    }

    /// The resource description in use.
    pub fn spec(&self) -> &ResourceSpec {
        &self.spec
    }

    /// The page size (`$top` and `odata.maxpagesize`).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The entity set URL.
    pub fn collection_url(&self) -> &str {
        &self.collection_url
    }

    /// The OData client (shared with approvals).
    pub fn odata(&self) -> &ODataClient {
        &self.odata
    }

    /// The company filtered on, if any.
    pub fn company(&self) -> Option<&str> {
        self.company.as_deref()
    }

    /// The `$filter` of one page request (`None`: no restriction).
    pub fn page_filter(&self, plan: &ReadPlan) -> Option<String> {
        let mut parts = Vec::new();
        if let (Some(c), Some(attr)) = (&self.company, &self.spec.company) {
            parts.push(format!("{attr} eq {}", literal::string(c)));
        }
        let after = plan
            .after_key
            .as_deref()
            .and_then(|k| self.spec.key_values(k))
            .and_then(|v| keys_after(&self.spec, &v));
        parts.extend(stamp_filter(&self.spec.stamp, plan, after));
        (!parts.is_empty()).then(|| parts.join(" and "))
    }

    /// The query of one page request.
    pub fn page_query(&self, plan: &ReadPlan) -> ODataQuery {
        let mut order = vec![format!("{} asc", self.spec.stamp)];
        order.extend(self.spec.keys.iter().map(|k| format!("{} asc", k.name)));
        let mut q = ODataQuery::new()
            .order_by(order)
            .top(self.page_size)
            .max_page_size(self.page_size)
            .skip(plan.offset);
        if let Some(f) = self.page_filter(plan) {
            q = q.filter(f);
        }
        if self.use_select {
            q = q.select(self.spec.select());
        }
        q
    }

    async fn read(&self, query: &ODataQuery) -> Result<CollectionPage> {
        self.read_url(&self.collection_url, query).await
    }

    /// Reads one page (with retries). A `$select` the service refuses with 400 is dropped,
    /// for this and every later request (see `select_refused`), and the page read again;
    /// a 400 without `$select` names what to check.
    pub(crate) async fn read_url(&self, url: &str, query: &ODataQuery) -> Result<CollectionPage> {
        let refused = self.select_refused.load(Ordering::Relaxed);
        if query.has_select() && !refused {
            match self.read_once(url, query).await {
                Err((400, e)) => {
                    let whole = query.clone().without_select();
                    let page = self
                        .read_once(url, &whole)
                        .await
                        .map_err(|(status, e)| self.explained(url, status, e))?;
                    self.select_refused.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        source = %self,
                        error = %e,
                        "the service refused $select (an attribute this release lacks): \
                         reading whole entities; attributes it does not have stay empty"
                    );
                    return Ok(page);
                }
                other => return other.map_err(|(status, e)| self.explained(url, status, e)),
            }
        }
        let q = if query.has_select() {
            query.clone().without_select()
        } else {
            query.clone()
        };
        self.read_once(url, &q)
            .await
            .map_err(|(status, e)| self.explained(url, status, e))
    }

    /// A 400 on the entity set without `$select`: the stamp or a key is not an attribute
    /// of this release. Says what to check.
    fn explained(&self, url: &str, status: u16, e: ml_core::Error) -> ml_core::Error {
        if status == 400 && url == self.collection_url {
            let company = match (&self.company, &self.spec.company) {
                (Some(_), Some(attr)) => format!(
                    "; `{attr}` is filtered on because IFS_COMPANY is set (unset it if \
                     {} has no `{attr}`)",
                    self.spec.entity_set
                ),
                _ => String::new(),
            };
            e.with_hint(format!(
                "check that `{}` (the change stamp, `stamp_attribute`) and the keys are \
                 attributes of {} on this release, or read changes from the history log \
                 (change_detection = \"history_log\"){company}",
                self.spec.stamp,
                self.spec.path()
            ))
        } else {
            e
        }
    }

    /// One read with retries: the page, or the last HTTP status (0 without one) and error.
    async fn read_once(
        &self,
        url: &str,
        query: &ODataQuery,
    ) -> std::result::Result<CollectionPage, (u16, ml_core::Error)> {
        let status = AtomicU16::new(0);
        ml_core::retry::retry(&self.retry, || async {
            self.odata.get_collection(url, query).await.map_err(|e| {
                if let crate::error::IfsError::Http { status: s, .. } = &e {
                    status.store(*s, Ordering::Relaxed);
                }
                e.into()
            })
        })
        .await
        .map_err(|e| (status.load(Ordering::Relaxed), e))
    }

    async fn follow(&self, link: &str) -> Result<CollectionPage> {
        ml_core::retry::retry(&self.retry, || async {
            self.odata
                .follow(&self.collection_url, link, Some(self.page_size))
                .await
                .map_err(Into::into)
        })
        .await
    }
}

#[async_trait]
impl Source for IfsSource {
    fn kind(&self) -> EntityKind {
        self.spec.kind.clone()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        if let ChangeDetection::HistoryLog { url, lu_names } = &self.change_detection {
            return self.poll_history(url, lu_names, from).await;
        }
        let mut cursor = self.cursor.clone();
        let mut plan = cursor.plan(from)?;
        // An anchor whose key cannot be written as a literal (a rejected row ended the
        // page): read this page by offset instead.
        if let Some(k) = plan.after_key.as_deref()
            && self
                .spec
                .key_values(k)
                .and_then(|v| keys_after(&self.spec, &v))
                .is_none()
        {
            cursor = cursor.with_paging(Paging::AnchoredOffset);
            plan = cursor.plan(from)?;
        }
        let page = match &plan.token {
            // The cursor never stores a token from this source; a position written by
            // another tool may carry one: follow it opaquely.
            Some(link) => self.follow(link).await?,
            None => self.read(&self.page_query(&plan)).await?,
        };
        let system = self.to_string();
        let served = page.items.len();
        let rows: Vec<PageRow> = page
            .items
            .iter()
            .map(|raw| {
                let m = map_item(&self.spec, &system, raw);
                PageRow {
                    key: m.key,
                    version: m.version,
                    modified_at: m.modified_at,
                    item: m.item,
                }
            })
            .collect();
        // A nextLink (the server cut the page shorter) or a full `$top` page: more rows
        // may follow; the next page is a fresh keyset query, never the nextLink.
        // An empty page ends the cycle whatever it says (no loop on a bogus nextLink).
        let server_more = served > 0 && (page.next_link.is_some() || served >= self.page_size);
        drop(page);
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
        let mut q = ODataQuery::new().top(1);
        // The stamp is what every page orders and filters on: a release without it must
        // fail the check, not only the first poll.
        if matches!(self.change_detection, ChangeDetection::Stamp) {
            q = q.order_by([format!("{} asc", self.spec.stamp)]);
        }
        if self.use_select {
            q = q.select(self.spec.keys.iter().map(|k| k.name.clone()));
        }
        if let (Some(c), Some(attr)) = (&self.company, &self.spec.company) {
            q = q.filter(format!("{attr} eq {}", literal::string(c)));
        }
        self.read(&q).await?;
        if let ChangeDetection::HistoryLog { url, lu_names } = &self.change_detection {
            // The history log must be granted and readable too.
            let q = ODataQuery::new().top(1).filter(format!(
                "LuName eq {}",
                literal::string(lu_names.first().map_or("", String::as_str))
            ));
            self.read_url(url, &q)
                .await
                .map_err(|e| crate::history::history_error(e, url))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::IfsResource;

    #[test]
    fn composite_keyset_filter() {
        let spec = IfsResource::GlVouchers.spec();
        let f = keys_after(&spec, &["10".into(), "2026".into(), "A".into(), "7".into()])
            .expect("filter");
        assert_eq!(
            f,
            "Company gt '10' or (Company eq '10' and (AccountingYear gt 2026 or (AccountingYear eq 2026 and (VoucherType gt 'A' or (VoucherType eq 'A' and (VoucherNo gt 7))))))"
        );
        assert_eq!(
            keys_after(&spec, &["10".into(), "x".into(), "A".into(), "7".into()]),
            None
        );
    }
}
