use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use jiff::Timestamp;

use crate::clock::{Clock, SystemClock};
use crate::cursor::{Cursor, PageRow, Paging, Position, WatermarkCursor, fold_page};
use crate::error::{Error, Result};
use crate::record::{EntityKind, Record, Rejected, SourceItem};
use crate::source::{Page, Source};

#[derive(Clone, Debug)]
enum Row {
    Good(Box<Record>),
    Malformed {
        modified_at: Timestamp,
        raw: serde_json::Value,
        reason: String,
    },
}

impl Row {
    fn modified_at(&self) -> Timestamp {
        match self {
            Row::Good(r) => r.modified_at,
            Row::Malformed { modified_at, .. } => *modified_at,
        }
    }
}

/// The rows behind a [`MemorySource`]; clone the handle to add or change rows while a
/// pipeline runs.
#[derive(Clone, Debug, Default)]
pub struct SourceTable {
    rows: Arc<Mutex<BTreeMap<String, Row>>>,
}

impl SourceTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Row>> {
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Inserts or replaces a record (by its source key).
    pub fn upsert(&self, record: Record) {
        self.lock()
            .insert(record.key.clone(), Row::Good(Box::new(record)));
    }

    /// Inserts an item the source cannot parse: polled as a rejected item.
    pub fn insert_malformed(
        &self,
        key: impl Into<String>,
        modified_at: Timestamp,
        raw: serde_json::Value,
        reason: impl Into<String>,
    ) {
        self.lock().insert(
            key.into(),
            Row::Malformed {
                modified_at,
                raw,
                reason: reason.into(),
            },
        );
    }

    /// Removes a row.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The current records (not the malformed rows).
    pub fn records(&self) -> Vec<Record> {
        self.lock()
            .values()
            .filter_map(|r| match r {
                Row::Good(r) => Some((**r).clone()),
                Row::Malformed { .. } => None,
            })
            .collect()
    }
}

/// An in-memory [`Source`] over a [`SourceTable`], served like a REST collection: ordered
/// by (modification time, key), `>= since`, offset and limit (or keyset, see
/// [`crate::cursor::Paging`]), read through a
/// [`WatermarkCursor`]. Faults can be scripted.
pub struct MemorySource {
    name: String,
    kind: EntityKind,
    table: SourceTable,
    cursor: WatermarkCursor,
    page_size: usize,
    clock: Arc<dyn Clock>,
    faults: Mutex<VecDeque<Error>>,
    polls: AtomicU64,
}

impl MemorySource {
    /// A source named `name` (its `Display`) of one entity kind.
    pub fn new(name: impl Into<String>, kind: EntityKind, table: SourceTable) -> Self {
        Self {
            name: name.into(),
            kind,
            table,
            cursor: WatermarkCursor::default(),
            page_size: 100,
            clock: Arc::new(SystemClock),
            faults: Mutex::new(VecDeque::new()),
            polls: AtomicU64::new(0),
        }
    }

    /// Sets the page size (at least 1; at least 2 is used under
    /// [`Paging::AnchoredOffset`](crate::cursor::Paging), which needs room for its anchor).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// Sets the cursor.
    pub fn with_cursor(mut self, cursor: WatermarkCursor) -> Self {
        self.cursor = cursor;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The next polls fail with these errors, in order.
    pub fn fail_next(&self, errors: impl IntoIterator<Item = Error>) {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(errors);
    }

    /// How many polls were made (including failed ones).
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// The table behind the source.
    pub fn table(&self) -> &SourceTable {
        &self.table
    }
}

impl fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySource")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MemorySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Memory({})", self.name)
    }
}

#[async_trait]
impl Source for MemorySource {
    fn kind(&self) -> EntityKind {
        self.kind.clone()
    }

    async fn poll(&self, from: Option<&Position>) -> Result<Page> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
        {
            return Err(e);
        }
        let plan = self.cursor.plan(from)?;
        let page_size = match self.cursor.paging() {
            Paging::Keyset => self.page_size,
            Paging::AnchoredOffset => self.page_size.max(2),
        };
        let (rows, more) = {
            let table = self.table.lock();
            let mut all: Vec<(Timestamp, &String, &Row)> = table
                .iter()
                .filter(|(k, r)| match (plan.since, &plan.after_key) {
                    (None, _) => true,
                    (Some(s), None) => r.modified_at() >= s,
                    (Some(s), Some(after)) => {
                        r.modified_at() > s || (r.modified_at() == s && *k > after)
                    }
                })
                .filter(|(_, r)| {
                    plan.within.is_empty()
                        || plan
                            .within
                            .iter()
                            .any(|w| w.lo <= r.modified_at() && r.modified_at() <= w.hi)
                })
                .map(|(k, r)| (r.modified_at(), k, r))
                .collect();
            all.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let offset = usize::try_from(plan.offset).unwrap_or(usize::MAX);
            let rows: Vec<(String, Row)> = all
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|(_, k, r)| ((*k).clone(), (*r).clone()))
                .collect();
            (rows, all.len() > offset.saturating_add(page_size))
        };
        let rows = rows
            .into_iter()
            .map(|(key, r)| match r {
                Row::Good(rec) => PageRow {
                    version: rec.dedupe_version(),
                    modified_at: Some(rec.modified_at),
                    key,
                    item: SourceItem::Record(rec),
                },
                Row::Malformed {
                    modified_at,
                    raw,
                    reason,
                } => PageRow {
                    version: modified_at.to_string(),
                    modified_at: Some(modified_at),
                    key: key.clone(),
                    item: SourceItem::Rejected(Rejected {
                        key: Some(key),
                        reason,
                        raw: raw.into(),
                        modified_at: Some(modified_at),
                    }),
                },
            })
            .collect();
        fold_page(
            &self.cursor,
            from,
            &plan,
            rows,
            more,
            None,
            self.clock.now(),
        )
    }
}
