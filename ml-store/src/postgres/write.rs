//! Poll cycles and pages: `begin_cycle`, `commit_page` (one transaction), `end_cycle`.

use std::collections::HashMap;

use jiff::Timestamp;
use ml_core::audit::{CycleEnd, CycleId, JournalNote, PageCommit, PageCommitted};
use ml_core::{Destination, Error, Result};

use super::PostgresAuditStore;
use super::error::Db;
use crate::codec;

/// The advisory lock every `commit_page` holds for its transaction, one per journal
/// (schema): delivery ids are taken from their sequence under it, so they increase in
/// commit order across replicas. Pages are batches, so the lock is taken once per page,
/// not per record.
const COMMIT_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('ml-commit:' || current_schema(), 0))";

pub(crate) async fn begin_cycle(
    s: &PostgresAuditStore,
    stream: &str,
    at: Timestamp,
) -> Result<CycleId> {
    let ctx = s.ctx("begin_cycle");
    let at = codec::ts(at).db(&ctx)?;
    let client = s.client("begin_cycle").await?;
    let stmt = client
        .prepare_cached("INSERT INTO cycles (stream, started_at) VALUES ($1, $2) RETURNING id")
        .await
        .db(&ctx)?;
    let row = client.query_one(&stmt, &[&stream, &at]).await.db(&ctx)?;
    Ok(CycleId(row.get(0)))
}

pub(crate) async fn end_cycle(
    s: &PostgresAuditStore,
    cycle: CycleId,
    end: &CycleEnd,
) -> Result<()> {
    let ctx = s.ctx("end_cycle");
    let at = codec::ts(end.at).db(&ctx)?;
    let error = codec::to_json_opt(end.error.as_ref()).db(&ctx)?;
    let watermark = codec::ts_opt(end.watermark).db(&ctx)?;
    let client = s.client("end_cycle").await?;
    let stmt = client
        .prepare_cached(
            "UPDATE cycles SET finished_at = $2, error = $3, watermark = $4 WHERE id = $1",
        )
        .await
        .db(&ctx)?;
    let n = client
        .execute(&stmt, &[&cycle.0, &at, &error, &watermark])
        .await
        .db(&ctx)?;
    if n == 0 {
        return Err(Error::NotFound(format!("cycle {}", cycle.0)));
    }
    Ok(())
}

/// A record of the page, encoded once before the transaction.
struct Encoded {
    dedupe_key: String,
    dedupe_version: String,
    key: String,
    body: String,
    destinations: Vec<Destination>,
}

/// Journals one page in ONE transaction (see the trait): records deduplicated by the unique
/// constraint (and within the page), deliveries in page order with ids that follow commit
/// order, rejected items deduplicated, the cycle's counters and the stream's position.
pub(crate) async fn commit_page(s: &PostgresAuditStore, page: PageCommit) -> Result<PageCommitted> {
    let ctx = s.ctx("commit_page");
    let at = codec::ts(page.at).db(&ctx)?;
    let position = page.position.to_json_string();
    let records: Vec<Encoded> = page
        .records
        .into_iter()
        .map(|p| {
            Ok(Encoded {
                dedupe_key: p.record.dedupe_key().to_owned(),
                dedupe_version: p.record.dedupe_version(),
                body: codec::to_json(&p.record).db(&ctx)?,
                key: p.record.key,
                destinations: p.destinations,
            })
        })
        .collect::<Result<_>>()?;
    let mut rejected: Vec<(String, String)> = Vec::with_capacity(page.rejected.len());
    for r in &page.rejected {
        let identity = r.identity();
        if !rejected.iter().any(|(i, _)| *i == identity) {
            rejected.push((identity, codec::to_json(r).db(&ctx)?));
        }
    }
    let mut out = PageCommitted {
        rejected: 0,
        ..PageCommitted::default()
    };
    // The first occurrence of each identity within the page; later ones are duplicates.
    let mut first: HashMap<(&str, &str), usize> = HashMap::with_capacity(records.len());
    let mut unique: Vec<usize> = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let id = (r.dedupe_key.as_str(), r.dedupe_version.as_str());
        if let std::collections::hash_map::Entry::Vacant(e) = first.entry(id) {
            e.insert(i);
            unique.push(i);
        } else {
            out.duplicates += 1;
        }
    }

    let mut client = s.client("commit_page").await?;
    let tx = client.transaction().await.db(&ctx)?;
    let lock = tx.prepare_cached(COMMIT_LOCK).await.db(&ctx)?;
    tx.execute(&lock, &[]).await.db(&ctx)?;
    let known = tx
        .prepare_cached("SELECT 1 FROM cycles WHERE id = $1")
        .await
        .db(&ctx)?;
    if tx
        .query_opt(&known, &[&page.cycle.0])
        .await
        .db(&ctx)?
        .is_none()
    {
        return Err(Error::NotFound(format!("cycle {}", page.cycle.0)));
    }

    // Record ids in page order: taken from the sequence under the commit lock.
    let ids = take_ids(&tx, "records_id_seq", unique.len(), &ctx).await?;
    let mut inserted: HashMap<i64, usize> = HashMap::with_capacity(unique.len());
    if !unique.is_empty() {
        let (mut dk, mut dv, mut rk, mut body) = (
            Vec::with_capacity(unique.len()),
            Vec::with_capacity(unique.len()),
            Vec::with_capacity(unique.len()),
            Vec::with_capacity(unique.len()),
        );
        for &i in &unique {
            let r = &records[i];
            dk.push(r.dedupe_key.as_str());
            dv.push(r.dedupe_version.as_str());
            rk.push(r.key.as_str());
            body.push(r.body.as_str());
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO records \
                   (id, stream, dedupe_key, dedupe_version, record_key, cycle_id, journaled_at, body) \
                 SELECT u.id, $2, u.dk, u.dv, u.rk, $3, $4, u.body \
                 FROM unnest($1::bigint[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                   AS u(id, dk, dv, rk, body) \
                 ON CONFLICT (stream, dedupe_key, dedupe_version) DO NOTHING \
                 RETURNING id",
            )
            .await
            .db(&ctx)?;
        let rows = tx
            .query(
                &stmt,
                &[&ids, &page.stream, &page.cycle.0, &at, &dk, &dv, &rk, &body],
            )
            .await
            .db(&ctx)?;
        let by_id: HashMap<i64, usize> = ids.iter().copied().zip(unique.iter().copied()).collect();
        for row in rows {
            let id: i64 = row.get(0);
            let i = by_id.get(&id).copied().ok_or_else(|| {
                Error::Corrupt(format!("{ctx}: record insert returned an unknown id {id}"))
            })?;
            inserted.insert(id, i);
        }
    }
    out.inserted = inserted.len() as u64;
    out.duplicates += (unique.len() - inserted.len()) as u64;

    // (record id, destination) in page order, destinations deduplicated per record.
    let mut order: Vec<(i64, usize)> = inserted.iter().map(|(id, i)| (*id, *i)).collect();
    order.sort_by_key(|(_, i)| *i);
    let mut planned: Vec<(i64, &Destination)> = Vec::new();
    for (record_id, i) in &order {
        let mut seen: Vec<&Destination> = Vec::new();
        for d in &records[*i].destinations {
            if !seen.contains(&d) {
                seen.push(d);
                planned.push((*record_id, d));
            }
        }
    }
    if !planned.is_empty() {
        let dest_ids = destination_ids(&tx, planned.iter().map(|(_, d)| *d), &ctx).await?;
        let ids = take_ids(&tx, "deliveries_id_seq", planned.len(), &ctx).await?;
        let record_ids: Vec<i64> = planned.iter().map(|(r, _)| *r).collect();
        let dests: Vec<i64> = planned
            .iter()
            .map(|(_, d)| dest_ids.get(*d).copied().unwrap_or_default())
            .collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO deliveries \
                   (id, record_id, dest_id, status, created_at, updated_at, next_attempt_at) \
                 SELECT u.id, u.r, u.d, 'pending', $4, $4, $4 \
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(id, r, d)",
            )
            .await
            .db(&ctx)?;
        tx.execute(&stmt, &[&ids, &record_ids, &dests, &at])
            .await
            .db(&ctx)?;
        out.deliveries = planned.len() as u64;
    }

    if !rejected.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO rejected (stream, identity, item, cycle_id, at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream, identity) DO NOTHING",
            )
            .await
            .db(&ctx)?;
        // One by one: rejected ids follow page order (they are listed newest first).
        for (identity, item) in &rejected {
            out.rejected += tx
                .execute(&stmt, &[&page.stream, identity, item, &page.cycle.0, &at])
                .await
                .db(&ctx)?;
        }
    }

    let stmt = tx
        .prepare_cached(
            "INSERT INTO positions (stream, position, cycle_id, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream) DO UPDATE SET position = excluded.position, \
               cycle_id = excluded.cycle_id, updated_at = excluded.updated_at",
        )
        .await
        .db(&ctx)?;
    tx.execute(&stmt, &[&page.stream, &position, &page.cycle.0, &at])
        .await
        .db(&ctx)?;
    let stmt = tx
        .prepare_cached(
            "UPDATE cycles SET pages = pages + 1, inserted = inserted + $2, \
               duplicates = duplicates + $3, rejected = rejected + $4, \
               deliveries = deliveries + $5, position = $6 \
             WHERE id = $1",
        )
        .await
        .db(&ctx)?;
    tx.execute(
        &stmt,
        &[
            &page.cycle.0,
            &codec::sql_count(out.inserted),
            &codec::sql_count(out.duplicates),
            &codec::sql_count(out.rejected),
            &codec::sql_count(out.deliveries),
            &position,
        ],
    )
    .await
    .db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(out)
}

/// `n` ids from `sequence`, ascending. Called under [`COMMIT_LOCK`], the only user of the
/// journal's id sequences, so they are consecutive.
async fn take_ids(
    tx: &deadpool_postgres::Transaction<'_>,
    sequence: &str,
    n: usize,
    ctx: &str,
) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT nextval('{sequence}') FROM generate_series(1, $1::bigint)"
        ))
        .await
        .db(ctx)?;
    let mut ids: Vec<i64> = tx
        .query(&stmt, &[&(n as i64)])
        .await
        .db(ctx)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The ids of `dests`, created on first use.
async fn destination_ids<'d>(
    tx: &deadpool_postgres::Transaction<'_>,
    dests: impl Iterator<Item = &'d Destination>,
    ctx: &str,
) -> Result<HashMap<&'d Destination, i64>> {
    let mut unique: Vec<&Destination> = Vec::new();
    for d in dests {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    let sinks: Vec<&str> = unique.iter().map(|d| d.sink.as_str()).collect();
    let addresses: Vec<&str> = unique.iter().map(|d| d.address.as_str()).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO destinations (sink, address) \
             SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .await
        .db(ctx)?;
    tx.execute(&insert, &[&sinks, &addresses]).await.db(ctx)?;
    let select = tx
        .prepare_cached(
            "SELECT d.id, d.sink, d.address FROM destinations AS d \
             JOIN unnest($1::text[], $2::text[]) AS u(sink, address) \
               ON d.sink = u.sink AND d.address = u.address",
        )
        .await
        .db(ctx)?;
    let rows = tx.query(&select, &[&sinks, &addresses]).await.db(ctx)?;
    let mut out = HashMap::with_capacity(unique.len());
    for row in rows {
        let (id, sink, address): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        if let Some(d) = unique
            .iter()
            .find(|d| d.sink == sink && d.address == address)
        {
            out.insert(*d, id);
        }
    }
    if out.len() != unique.len() {
        return Err(Error::Corrupt(format!(
            "{ctx}: {} destinations could not be created",
            unique.len() - out.len()
        )));
    }
    Ok(out)
}

/// Writes `note` unless one with its kind and dedupe string is there: `true` when written.
pub(crate) async fn note(s: &PostgresAuditStore, note: &JournalNote) -> Result<bool> {
    let ctx = s.ctx("note");
    let at = codec::ts(note.at).db(&ctx)?;
    let client = s.client("note").await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO journal_notes (at, stream, kind, severity, dedupe, message) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, dedupe) DO NOTHING",
        )
        .await
        .db(&ctx)?;
    let n = client
        .execute(
            &stmt,
            &[
                &at,
                &note.stream,
                &note.kind,
                &note.severity.as_str(),
                &note.dedupe,
                &note.message,
            ],
        )
        .await
        .db(&ctx)?;
    Ok(n == 1)
}
