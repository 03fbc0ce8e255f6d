//! Poll cycles and pages: `begin_cycle`, `commit_page` (one transaction), `end_cycle`.

use std::collections::HashMap;
use std::sync::OnceLock;

use ml_core::audit::{CycleEnd, CycleId, JournalNote, PageCommit, PageCommitted};
use ml_core::{Destination, Error, Record};
use rusqlite::{
    Connection, OptionalExtension, ToSql, TransactionBehavior, params, params_from_iter,
};

use crate::body::Body;
use crate::codec::{self, sql_count};
use crate::error::{StoreError, StoreResult};

/// A record encoded for the journal.
pub(crate) struct EncodedRecord {
    /// The record itself, for the handle's recent records once journaled.
    pub(crate) record: Option<Record>,
    dedupe_key: String,
    dedupe_version: String,
    key: String,
    body: Body,
    destinations: Vec<Destination>,
}

impl EncodedRecord {
    /// The record and its body as journaled, once (for the handle's recent records).
    pub(crate) fn take(&mut self) -> Option<(Record, Body)> {
        Some((
            self.record.take()?,
            std::mem::replace(&mut self.body, Body::Json(Vec::new())),
        ))
    }
}

/// A rejected item encoded for the journal.
pub(crate) struct EncodedRejected {
    identity: String,
    item: String,
}

/// A page encoded for the journal: each record's body is encoded (and compressed) once,
/// before the write lock is taken.
pub(crate) struct EncodedPage {
    stream: String,
    cycle: i64,
    pub(crate) records: Vec<EncodedRecord>,
    rejected: Vec<EncodedRejected>,
    position: String,
    at: i64,
}

/// Encodes a (validated) page.
pub(crate) fn encode_page(page: PageCommit) -> StoreResult<EncodedPage> {
    let records = page
        .records
        .into_iter()
        .map(|p| {
            Ok(EncodedRecord {
                dedupe_key: p.record.dedupe_key().to_owned(),
                dedupe_version: p.record.dedupe_version(),
                body: Body::encode(&p.record)?,
                key: p.record.key.clone(),
                record: Some(p.record),
                destinations: p.destinations,
            })
        })
        .collect::<StoreResult<_>>()?;
    let rejected = page
        .rejected
        .iter()
        .map(|r| {
            Ok(EncodedRejected {
                identity: r.identity(),
                item: codec::to_json(r)?,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(EncodedPage {
        stream: page.stream,
        cycle: page.cycle.0,
        records,
        rejected,
        position: page.position.to_json_string(),
        at: codec::ts(page.at)?,
    })
}

pub(crate) fn begin_cycle(conn: &mut Connection, stream: &str, at: i64) -> StoreResult<CycleId> {
    conn.prepare_cached("INSERT INTO cycles (stream, started_at) VALUES (?1, ?2)")?
        .execute(params![stream, at])?;
    Ok(CycleId(conn.last_insert_rowid()))
}

pub(crate) fn end_cycle(conn: &mut Connection, cycle: CycleId, end: &CycleEnd) -> StoreResult<()> {
    let n = conn
        .prepare_cached(
            "UPDATE cycles SET finished_at = ?2, error = ?3, watermark = ?4 WHERE id = ?1",
        )?
        .execute(params![
            cycle.0,
            codec::ts(end.at)?,
            codec::to_json_opt(end.error.as_ref())?,
            codec::ts_opt(end.watermark)?,
        ])?;
    if n == 0 {
        return Err(Error::NotFound(format!("cycle {}", cycle.0)).into());
    }
    Ok(())
}

/// The id of a destination, created on first use.
fn destination_id(
    conn: &Connection,
    cache: &mut HashMap<Destination, i64>,
    d: &Destination,
) -> StoreResult<i64> {
    if let Some(id) = cache.get(d) {
        return Ok(*id);
    }
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM destinations WHERE sink = ?1 AND address = ?2")?
        .query_row(params![d.sink, d.address], |r| r.get(0))
        .optional()?;
    let id = if let Some(id) = found {
        id
    } else {
        conn.prepare_cached("INSERT INTO destinations (sink, address) VALUES (?1, ?2)")?
            .execute(params![d.sink, d.address])?;
        conn.last_insert_rowid()
    };
    cache.insert(d.clone(), id);
    Ok(id)
}

/// Rows per multi-row statement, largest first: a page of 500 records costs about a dozen
/// statements instead of one per record (a statement's fixed cost is about that of the row
/// it inserts).
const BATCH_SIZES: [usize; 3] = [64, 8, 1];

/// The sizes (from [`BATCH_SIZES`]) covering `len` rows, in order.
fn batches(len: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = len - start;
        let size = BATCH_SIZES.into_iter().find(|&b| b <= left)?;
        let at = start;
        start += size;
        Some((at, size))
    })
}

/// Multi-row statement texts, one per batch size, built on first use.
struct BatchSql {
    build: fn(usize) -> String,
    built: [OnceLock<String>; BATCH_SIZES.len()],
}

impl BatchSql {
    const fn new(build: fn(usize) -> String) -> Self {
        Self {
            build,
            built: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
        }
    }

    fn get(&self, size: usize) -> &str {
        let i = BATCH_SIZES
            .iter()
            .position(|&b| b == size)
            .expect("a batch size");
        self.built[i].get_or_init(|| (self.build)(size))
    }
}

/// `?1` stream, `?2` cycle, `?3` time, then per row: dedupe key, dedupe version, source key,
/// body. Returns the rows actually inserted (conflicts are skipped).
static INSERT_RECORDS: BatchSql = BatchSql::new(|n| {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p = 4 + 4 * i;
            format!("(?1, ?{p}, ?{}, ?{}, ?2, ?3, ?{})", p + 1, p + 2, p + 3)
        })
        .collect();
    format!(
        "INSERT INTO records \
           (stream, dedupe_key, dedupe_version, record_key, cycle_id, journaled_at, body) \
         VALUES {} \
         ON CONFLICT (stream, dedupe_key, dedupe_version) DO NOTHING \
         RETURNING id, dedupe_key, dedupe_version",
        rows.join(", ")
    )
});

/// `?1` time, then per row: record id, destination id.
static INSERT_DELIVERIES: BatchSql = BatchSql::new(|n| {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("(?{}, ?{}, 'pending', ?1, ?1, ?1)", 2 * i + 2, 2 * i + 3))
        .collect();
    format!(
        "INSERT INTO deliveries \
           (record_id, dest_id, status, created_at, updated_at, next_attempt_at) \
         VALUES {}",
        rows.join(", ")
    )
});

/// Inserts a batch of records; `ids[i]` is set to the new id of `batch[i]` when it was
/// journaled for the first time (a duplicate of a journaled record, or of an earlier record
/// of the page, stays `None`).
fn insert_records(
    conn: &Connection,
    page: &EncodedPage,
    batch: &[EncodedRecord],
    ids: &mut Vec<Option<i64>>,
) -> StoreResult<()> {
    let mut args: Vec<&dyn ToSql> = Vec::with_capacity(3 + 4 * batch.len());
    args.extend([&page.stream as &dyn ToSql, &page.cycle, &page.at]);
    for r in batch {
        args.extend([
            &r.dedupe_key as &dyn ToSql,
            &r.dedupe_version,
            &r.key,
            &r.body,
        ]);
    }
    // RETURNING order is unspecified: map rows back by identity, to the first occurrence
    // (rows are inserted in VALUES order, so a later duplicate within the batch conflicts).
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        first
            .entry((r.dedupe_key.as_str(), r.dedupe_version.as_str()))
            .or_insert(i);
    }
    ids.clear();
    ids.resize(batch.len(), None);
    let mut stmt = conn.prepare_cached(INSERT_RECORDS.get(batch.len()))?;
    let mut rows = stmt.query(params_from_iter(args))?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let key = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let version = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
        let i = first.get(&(key, version)).copied().ok_or_else(|| {
            StoreError::corrupt(format!(
                "record insert returned an unknown identity ({key}, {version})"
            ))
        })?;
        ids[i] = Some(id);
    }
    Ok(())
}

/// Inserts pending deliveries (record id, destination id) in page order, so their ids
/// follow page order.
fn insert_deliveries(conn: &Connection, rows: &[(i64, i64)], at: i64) -> StoreResult<()> {
    let mut args: Vec<i64> = Vec::with_capacity(1 + 2 * BATCH_SIZES[0]);
    for (start, size) in batches(rows.len()) {
        args.clear();
        args.push(at);
        args.extend(rows[start..start + size].iter().flat_map(|&(r, d)| [r, d]));
        conn.prepare_cached(INSERT_DELIVERIES.get(size))?
            .execute(params_from_iter(&args))?;
    }
    Ok(())
}

/// Journals one page in ONE `BEGIN IMMEDIATE` transaction: records (deduplicated by the
/// unique index), their deliveries in page order, rejected items (deduplicated), the
/// cycle's counters and the stream's position.
///
/// `journaled` receives (row id, index in `page.records`) of each record journaled for
/// the first time.
pub(crate) fn commit_page(
    conn: &mut Connection,
    page: &EncodedPage,
    journaled: &mut Vec<(i64, usize)>,
) -> StoreResult<PageCommitted> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known = tx
        .prepare_cached("SELECT 1 FROM cycles WHERE id = ?1")?
        .exists([page.cycle])?;
    if !known {
        return Err(Error::NotFound(format!("cycle {}", page.cycle)).into());
    }
    let mut out = PageCommitted::default();
    {
        let mut dest_ids = HashMap::new();
        // (record id, destination id) in page order, inserted after the records.
        let mut deliveries: Vec<(i64, i64)> = Vec::with_capacity(page.records.len());
        let mut planned: Vec<i64> = Vec::new();
        let mut ids = Vec::new();
        for (start, size) in batches(page.records.len()) {
            let batch = &page.records[start..start + size];
            insert_records(&tx, page, batch, &mut ids)?;
            for (i, (r, id)) in batch.iter().zip(&ids).enumerate() {
                let Some(record_id) = *id else {
                    out.duplicates += 1;
                    continue;
                };
                out.inserted += 1;
                journaled.push((record_id, start + i));
                planned.clear();
                for d in &r.destinations {
                    let dest = destination_id(&tx, &mut dest_ids, d)?;
                    if !planned.contains(&dest) {
                        planned.push(dest);
                        deliveries.push((record_id, dest));
                    }
                }
            }
        }
        insert_deliveries(&tx, &deliveries, page.at)?;
        out.deliveries = deliveries.len() as u64;
        let mut insert_rejected = tx.prepare_cached(
            "INSERT INTO rejected (stream, identity, item, cycle_id, at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (stream, identity) DO NOTHING",
        )?;
        for r in &page.rejected {
            out.rejected += insert_rejected.execute(params![
                page.stream,
                r.identity,
                r.item,
                page.cycle,
                page.at
            ])? as u64;
        }
        tx.prepare_cached(
            "INSERT INTO positions (stream, position, cycle_id, updated_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (stream) DO UPDATE SET position = excluded.position, \
               cycle_id = excluded.cycle_id, updated_at = excluded.updated_at",
        )?
        .execute(params![page.stream, page.position, page.cycle, page.at])?;
        tx.prepare_cached(
            "UPDATE cycles SET pages = pages + 1, inserted = inserted + ?2, \
               duplicates = duplicates + ?3, rejected = rejected + ?4, \
               deliveries = deliveries + ?5, position = ?6 \
             WHERE id = ?1",
        )?
        .execute(params![
            page.cycle,
            sql_count(out.inserted),
            sql_count(out.duplicates),
            sql_count(out.rejected),
            sql_count(out.deliveries),
            page.position,
        ])?;
    }
    tx.commit()?;
    Ok(out)
}

/// Writes `note` unless one with its kind and dedupe string is there: `true` when written.
pub(crate) fn note(conn: &mut Connection, note: &JournalNote) -> StoreResult<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO journal_notes (at, stream, kind, severity, dedupe, message) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (kind, dedupe) DO NOTHING",
        )?
        .execute(params![
            codec::ts(note.at)?,
            note.stream,
            note.kind,
            note.severity.as_str(),
            note.dedupe,
            note.message,
        ])?;
    Ok(n == 1)
}
