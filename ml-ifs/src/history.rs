//! Change detection by the IFS history log (`IFS_CHANGE_DETECTION=history_log`), for
//! entity sets without a reliable modification stamp, where the customer enabled history
//! logging for the logical units (LUs) read.
//!
//! Each page reads `HistoryLogHandling.svc/HistoryLogOverviewSet` entries of the watched
//! LUs with the same tie-proof keyset as the stamp mode, on `(TimeStamp, LogId)`:
//! `TimeStamp gt T or (TimeStamp eq T and LogId gt N)`, ordered by both, bounded by
//! `$top`; the cursor's overlap and sweep windows re-read late entries (a transaction
//! that commits after later entries became visible). The entries' `Keys`
//! (`COMPANY=10^INVOICE_ID=7^`, database column names) name the changed records, which
//! are then read by key in one `$filter` per chunk; each changed record is delivered in
//! its current version (the ETag), once per page, and the journal's dedupe on (key,
//! ETag) drops a version seen before. A record deleted since is skipped.
//!
//! Unconfirmed (see `docs.md`): the attribute names `Keys`, `HistoryType`, `TableName`,
//! the `Keys` format, and that key columns are the upper-snake-case attribute names.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use ml_core::cursor::{Cursor as _, Position, ReadPlan, Seen, WatermarkCursor};
use ml_core::error::{Error, Result};
use ml_core::record::{Rejected, SourceItem};
use ml_core::source::Page;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::{map_item, parse_timestamp};
use crate::odata::{ODataQuery, literal};
use crate::source::{IfsSource, stamp_filter};

/// The default history log entity set (under the service root).
pub const DEFAULT_HISTORY_PATH: &str = "HistoryLogHandling.svc/HistoryLogOverviewSet";
const LOG_ID: &str = "LogId";
const TIME_STAMP: &str = "TimeStamp";
const LU_NAME: &str = "LuName";
const KEYS: &str = "Keys";
const HISTORY_TYPE: &str = "HistoryType";
/// Records read by key per request (keeps the URL short).
const KEYS_PER_REQUEST: usize = 40;

/// How an [`IfsSource`] finds changed records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeDetection {
    /// The entity set's change stamp (`ModifiedDateTime` or `IFS_STAMP_ATTRIBUTE`).
    Stamp,
    /// The history log.
    HistoryLog {
        /// The history log entity set URL.
        url: String,
        /// The LUs watched (`LuName`).
        lu_names: Vec<String>,
    },
}

/// `InvoiceId` -> `INVOICE_ID`: the database column behind an attribute (IFS naming).
pub fn column_name(attribute: &str) -> String {
    let mut out = String::with_capacity(attribute.len() + 4);
    let mut prev_lower = false;
    for c in attribute.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Parses a history entry's `Keys` (`COMPANY=10^INVOICE_ID=7^`) into column -> value.
pub fn parse_keys(keys: &str) -> BTreeMap<String, String> {
    keys.split('^')
        .filter_map(|p| p.split_once('='))
        .map(|(c, v)| (c.trim().to_ascii_uppercase(), v.to_owned()))
        .collect()
}

/// The cursor key of an entry: the log id zero-padded, so text order is numeric order.
fn entry_key(log_id: u64) -> String {
    format!("{log_id:020}")
}

struct Entry {
    key: String,
    at: Option<jiff::Timestamp>,
    /// The changed record's key values, when the entry names them.
    values: Option<Vec<String>>,
    raw: Box<RawValue>,
}

/// The `$filter` of one history page: the watched LUs and the cursor's keyset on
/// (`TimeStamp`, `LogId`).
fn history_filter(lu_names: &[String], plan: &ReadPlan) -> String {
    let lus: Vec<String> = lu_names
        .iter()
        .map(|l| format!("{LU_NAME} eq {}", literal::string(l)))
        .collect();
    let mut parts = vec![if lus.len() == 1 {
        lus[0].clone()
    } else {
        format!("({})", lus.join(" or "))
    }];
    let after = plan
        .after_key
        .as_deref()
        .and_then(|k| k.parse::<u64>().ok())
        .map(|id| format!("{LOG_ID} gt {id}"));
    parts.extend(stamp_filter(TIME_STAMP, plan, after));
    parts.join(" and ")
}

impl IfsSource {
    fn entry(&self, raw: Box<RawValue>) -> Entry {
        let v: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        let id = match &v[LOG_ID] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let at = v[TIME_STAMP].as_str().and_then(parse_timestamp);
        let values = v[KEYS].as_str().map(parse_keys).and_then(|cols| {
            self.spec
                .keys
                .iter()
                .map(|k| cols.get(&column_name(&k.name)).cloned())
                .collect::<Option<Vec<String>>>()
        });
        Entry {
            key: id.map(entry_key).unwrap_or_default(),
            at,
            values,
            raw,
        }
    }

    /// Reads the records named by `keys` (by key, within the company), key -> entity.
    async fn records_by_key(&self, keys: &[Vec<String>]) -> Result<HashMap<String, Box<RawValue>>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_REQUEST) {
            let mut remaining: Vec<&Vec<String>> = chunk.iter().collect();
            // A server page shorter than asked (its nextLink) is continued by asking for
            // the keys not yet served: a fixed key set, never an offset.
            while !remaining.is_empty() {
                let Some(q) = self.by_key_query(&remaining) else {
                    break;
                };
                let page = self.read_url(&self.collection_url, &q).await?;
                let more = page.next_link.is_some() && !page.items.is_empty();
                for raw in page.items {
                    let m = map_item(&self.spec, "", &raw);
                    out.insert(m.key, raw);
                }
                if !more {
                    break;
                }
                remaining.retain(|v| {
                    self.spec
                        .record_key(v)
                        .is_some_and(|k| !out.contains_key(&k))
                });
            }
        }
        Ok(out)
    }

    /// `(k1 eq v1 and k2 eq v2) or ...` within the company, ordered by key.
    fn by_key_query(&self, keys: &[&Vec<String>]) -> Option<ODataQuery> {
        let ors: Vec<String> = keys
            .iter()
            .filter_map(|values| {
                let parts: Option<Vec<String>> = self
                    .spec
                    .keys
                    .iter()
                    .zip(values.iter())
                    .map(|(k, v)| k.literal(v).map(|l| format!("{} eq {l}", k.name)))
                    .collect();
                parts.map(|p| format!("({})", p.join(" and ")))
            })
            .collect();
        if ors.is_empty() {
            return None;
        }
        let mut filter = format!("({})", ors.join(" or "));
        if let (Some(c), Some(attr)) = (&self.company, &self.spec.company) {
            filter = format!("{attr} eq {} and {filter}", literal::string(c));
        }
        let mut q = ODataQuery::new()
            .filter(filter)
            .order_by(self.spec.keys.iter().map(|k| format!("{} asc", k.name)))
            .top(keys.len())
            .max_page_size(keys.len());
        if self.use_select {
            q = q.select(self.spec.select());
        }
        Some(q)
    }

    /// One page in history-log mode (see the module docs).
    pub(crate) async fn poll_history(
        &self,
        url: &str,
        lu_names: &[String],
        from: Option<&Position>,
    ) -> Result<Page> {
        let cursor: WatermarkCursor = self.cursor.clone();
        let plan = cursor.plan(from)?;
        let mut q = ODataQuery::new()
            .filter(history_filter(lu_names, &plan))
            .order_by([format!("{TIME_STAMP} asc"), format!("{LOG_ID} asc")])
            .top(self.page_size)
            .max_page_size(self.page_size)
            .skip(plan.offset);
        if self.use_select {
            q = q.select([LOG_ID, LU_NAME, TIME_STAMP, KEYS, HISTORY_TYPE].map(str::to_owned));
        }
        let page = self
            .read_url(url, &q)
            .await
            .map_err(|e| history_error(e, url))?;
        let served = page.items.len();
        let server_more = served > 0 && (page.next_link.is_some() || served >= self.page_size);
        let entries: Vec<Entry> = page.items.into_iter().map(|r| self.entry(r)).collect();
        // Entries without a time borrow the previous one's, as `fold_page` does.
        let mut last = plan.since.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let times: Vec<jiff::Timestamp> = entries
            .iter()
            .map(|e| {
                if let Some(t) = e.at {
                    last = t;
                }
                last
            })
            .collect();
        let seen: Vec<Seen<'_>> = entries
            .iter()
            .zip(&times)
            .map(|(e, t)| Seen {
                key: &e.key,
                version: &e.key,
                modified_at: *t,
            })
            .collect();
        let adv = cursor.advance(from, &seen, server_more, None, self.clock.now())?;
        drop(seen);
        let fresh: Vec<(usize, &Entry)> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !adv.already_seen.contains(i))
            .collect();
        let mut wanted: Vec<Vec<String>> = Vec::new();
        for (_, e) in &fresh {
            if let Some(v) = &e.values
                && !wanted.contains(v)
            {
                wanted.push(v.clone());
            }
        }
        let records = self.records_by_key(&wanted).await?;
        let system = self.to_string();
        let mut items = Vec::new();
        let mut delivered: Vec<String> = Vec::new();
        for (e, at) in fresh.iter().map(|(i, e)| (*e, times[*i])) {
            let Some(values) = &e.values else {
                let mut r = Rejected::new(
                    (!e.key.is_empty()).then(|| e.key.clone()),
                    format!(
                        "history entry without the keys of {} ({})",
                        self.spec.path(),
                        self.spec
                            .keys
                            .iter()
                            .map(|k| column_name(&k.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    ml_core::record::RawJson::from(e.raw.clone()),
                );
                r.modified_at = Some(at);
                items.push(SourceItem::Rejected(r));
                continue;
            };
            let Some(key) = self.spec.record_key(values) else {
                continue;
            };
            if delivered.contains(&key) {
                continue;
            }
            // Deleted since the entry (or outside the company): nothing to deliver.
            let Some(raw) = records.get(&key) else {
                tracing::debug!(record = %key, "history entry of a record no longer readable");
                continue;
            };
            let raw = with_stamp(raw, &self.spec.stamp, at);
            items.push(map_item(&self.spec, &system, &raw).item);
            delivered.push(key);
        }
        Ok(Page {
            items,
            next: adv.position,
            more: adv.more,
            watermark: adv.watermark,
        })
    }
}

/// The entity with the entry's time as its stamp when it has none (entity sets without
/// a modification date are why the history log is used).
fn with_stamp(raw: &RawValue, stamp: &str, at: jiff::Timestamp) -> Box<RawValue> {
    if let Ok(mut map) = serde_json::from_str::<serde_json::Map<String, Value>>(raw.get())
        && map.get(stamp).is_none_or(Value::is_null)
    {
        map.insert(stamp.to_owned(), Value::from(at.to_string()));
        if let Ok(r) = serde_json::value::to_raw_value(&map) {
            return r;
        }
    }
    raw.to_owned()
}

/// 404 / 403 on the history log: a permanent error saying what to do (the stream
/// pauses; the other streams go on).
pub(crate) fn history_error(mut e: Error, url: &str) -> Error {
    if let Error::Remote { message, .. } = &mut e
        && let Some(s) = ["404", "403"]
            .into_iter()
            .find(|s| message.starts_with(&format!("HTTP {s}")))
    {
        let _ = write!(
            message,
            " (the history log {url} answered {s}: grant the integration user the \
             HistoryLogHandling projection and enable history logging for the LUs read, or \
             set IFS_CHANGE_DETECTION=stamp)"
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_columns() {
        assert_eq!(column_name("InvoiceId"), "INVOICE_ID");
        assert_eq!(column_name("Company"), "COMPANY");
        assert_eq!(column_name("VendorNo"), "VENDOR_NO");
        assert_eq!(column_name("AccountingYear"), "ACCOUNTING_YEAR");
        let k = parse_keys("COMPANY=10^INVOICE_ID=7^");
        assert_eq!(k["COMPANY"], "10");
        assert_eq!(k["INVOICE_ID"], "7");
        assert!(entry_key(9) < entry_key(10));
    }
}
