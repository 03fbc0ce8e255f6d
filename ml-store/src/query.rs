//! Reads: positions, deliveries by filter, attempts, record history, cycles, rejected
//! items, the next due time, stats.

use std::fmt::Write as _;

use jiff::Timestamp;
use ml_core::Position;
use ml_core::audit::{
    AttemptView, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryStatus, DeliveryView,
    JournalNote, JournalStats, NoteFilter, NoteSeverity, PageCommitted, RecordHistory,
    RecordVersion, RejectedView,
};
use ml_core::record::Rejected;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::body::Body;
use crate::codec::{self, DELIVERY_COLUMNS, DELIVERY_JOIN, sql_limit};
use crate::error::{StoreError, StoreResult};

pub(crate) fn load_position(conn: &mut Connection, stream: &str) -> StoreResult<Option<Position>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT position FROM positions WHERE stream = ?1")?
        .query_row([stream], |r| r.get(0))
        .optional()?;
    text.map(|t| {
        codec::from_json(&t, &format!("position of stream `{stream}`")).map(Position::from_json)
    })
    .transpose()
}

/// The `AND ...` conditions of a filter on `deliveries AS d JOIN records AS r` (time window
/// on the delivery's `updated_at`),
/// with their arguments in order. The limit is left to the caller.
pub(crate) fn filter_clause(f: &DeliveryFilter) -> (String, Vec<Value>) {
    let mut sql = String::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(id) = f.id {
        sql.push_str(" AND d.id = ?");
        args.push(id.0.into());
    }
    if let Some(s) = &f.stream {
        sql.push_str(" AND r.stream = ?");
        args.push(s.clone().into());
    }
    if let Some(k) = &f.record_key {
        sql.push_str(" AND r.record_key = ?");
        args.push(k.clone().into());
    }
    if let Some(dest) = &f.destination {
        sql.push_str(
            " AND d.dest_id = (SELECT id FROM destinations WHERE sink = ? AND address = ?)",
        );
        args.push(dest.sink.clone().into());
        args.push(dest.address.clone().into());
    }
    if let Some(st) = f.status {
        sql.push_str(" AND d.status = ?");
        args.push(st.as_str().to_owned().into());
    }
    if let Some(t) = f.since {
        sql.push_str(" AND d.updated_at >= ?");
        args.push(codec::ts_bound(t).into());
    }
    if let Some(t) = f.until {
        sql.push_str(" AND d.updated_at < ?");
        args.push(codec::ts_bound(t).into());
    }
    (sql, args)
}

fn select_deliveries(
    conn: &Connection,
    clause: &str,
    mut args: Vec<Value>,
    limit: Option<usize>,
) -> StoreResult<Vec<DeliveryView>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_JOIN} WHERE 1{clause} ORDER BY d.id LIMIT ?"
    );
    args.push(sql_limit(limit).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(codec::delivery(row)?);
    }
    Ok(out)
}

pub(crate) fn deliveries(
    conn: &mut Connection,
    filter: &DeliveryFilter,
) -> StoreResult<Vec<DeliveryView>> {
    let (clause, args) = filter_clause(filter);
    select_deliveries(conn, &clause, args, filter.limit)
}

pub(crate) fn attempts(conn: &mut Connection, id: DeliveryId) -> StoreResult<Vec<AttemptView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, started_at, finished_at, outcome, remote_id, error FROM attempts \
         WHERE delivery_id = ?1 ORDER BY number",
    )?;
    let mut rows = stmt.query([id.0])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let number: i64 = r.get(0)?;
        let what = format!("attempt {number} of delivery {id}");
        out.push(AttemptView {
            delivery_id: id,
            number: codec::count_u32(number, &what)?,
            started_at: codec::ts_from(r.get(1)?, &what)?,
            finished_at: codec::ts_from_opt(r.get(2)?, &what)?,
            outcome: r.get(3)?,
            remote_id: r.get(4)?,
            error: codec::from_json_opt(r.get::<_, Option<String>>(5)?.as_deref(), &what)?,
        });
    }
    Ok(out)
}

pub(crate) fn record_history(
    conn: &mut Connection,
    stream: &str,
    key: &str,
) -> StoreResult<RecordHistory> {
    // One read transaction: versions and deliveries from the same snapshot.
    let tx = conn.transaction()?;
    let mut versions = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, body, journaled_at FROM records \
             WHERE stream = ?1 AND record_key = ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query([stream, key])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let what = format!("record {id}");
            versions.push(RecordVersion {
                record: r.get::<_, Body>(1)?.decode(&what)?,
                journaled_at: codec::ts_from(r.get(2)?, &what)?,
            });
        }
    }
    let deliveries = select_deliveries(
        &tx,
        " AND r.stream = ? AND r.record_key = ?",
        vec![stream.to_owned().into(), key.to_owned().into()],
        None,
    )?;
    tx.finish()?;
    Ok(RecordHistory {
        versions,
        deliveries,
    })
}

/// The newest remote scope given to a message to `d` (newest first by id: a destination
/// in use is found at once).
pub(crate) fn destination_scope(
    conn: &mut Connection,
    d: &ml_core::sink::Destination,
) -> StoreResult<Option<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.remote_scope FROM deliveries AS d \
           JOIN destinations AS dst ON dst.id = d.dest_id \
         WHERE dst.sink = ?1 AND dst.address = ?2 AND d.remote_scope IS NOT NULL \
         ORDER BY d.id DESC LIMIT 1",
    )?;
    Ok(stmt
        .query_row(params![d.sink, d.address], |r| r.get(0))
        .optional()?)
}

pub(crate) fn last_send_end(
    conn: &mut Connection,
    d: &ml_core::sink::Destination,
) -> StoreResult<Option<Timestamp>> {
    let ns: Option<Option<i64>> = conn
        .prepare_cached("SELECT last_send_end FROM destinations WHERE sink = ?1 AND address = ?2")?
        .query_row(params![d.sink, d.address], |r| r.get(0))
        .optional()?;
    codec::ts_from_opt(ns.flatten(), &format!("the last send end of {d}"))
}

pub(crate) fn cycles(
    conn: &mut Connection,
    stream: &str,
    limit: usize,
) -> StoreResult<Vec<CycleView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, stream, started_at, finished_at, pages, inserted, duplicates, rejected, \
           deliveries, error, position, watermark \
         FROM cycles WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![stream, sql_limit(Some(limit))])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let what = format!("cycle {id}");
        out.push(CycleView {
            id: CycleId(id),
            stream: r.get(1)?,
            started_at: codec::ts_from(r.get(2)?, &what)?,
            finished_at: codec::ts_from_opt(r.get(3)?, &what)?,
            pages: codec::count_u64(r.get(4)?, &what)?,
            counts: PageCommitted {
                inserted: codec::count_u64(r.get(5)?, &what)?,
                duplicates: codec::count_u64(r.get(6)?, &what)?,
                rejected: codec::count_u64(r.get(7)?, &what)?,
                deliveries: codec::count_u64(r.get(8)?, &what)?,
            },
            error: codec::from_json_opt(r.get::<_, Option<String>>(9)?.as_deref(), &what)?,
            position: codec::from_json_opt(r.get::<_, Option<String>>(10)?.as_deref(), &what)?
                .map(Position::from_json),
            watermark: codec::ts_from_opt(r.get(11)?, &what)?,
        });
    }
    Ok(out)
}

pub(crate) fn rejected(
    conn: &mut Connection,
    stream: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<RejectedView>> {
    let limit = sql_limit(Some(limit));
    let mut stmt;
    let mut rows = if let Some(stream) = stream {
        stmt = conn.prepare_cached(
            "SELECT id, stream, item, at FROM rejected \
             WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        stmt.query(params![stream, limit])?
    } else {
        stmt = conn.prepare_cached(
            "SELECT id, stream, item, at FROM rejected ORDER BY id DESC LIMIT ?1",
        )?;
        stmt.query([limit])?
    };
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let what = format!("rejected item {id}");
        out.push(RejectedView {
            stream: r.get(1)?,
            item: codec::from_json::<Rejected>(&r.get::<_, String>(2)?, &what)?,
            at: codec::ts_from(r.get(3)?, &what)?,
        });
    }
    Ok(out)
}

pub(crate) fn next_due_at(conn: &mut Connection) -> StoreResult<Option<Timestamp>> {
    // Only heads of line count (see `AuditQuery::next_due_at`): one seek per destination
    // with work, as for a claim.
    let ns: Option<i64> = conn
        .prepare_cached(concat!(
            crate::deliver::heads_cte!(),
            "SELECT min(coalesce(d.next_attempt_at, 0)) FROM heads \
             JOIN deliveries AS d ON d.id = heads.id \
             WHERE d.status IN ('pending', 'retrying')"
        ))?
        .query_row([], |r| r.get(0))?;
    codec::ts_from_opt(ns, "next due time")
}

pub(crate) fn streams(conn: &mut Connection) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT stream FROM positions ORDER BY stream")?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

pub(crate) fn stats(conn: &mut Connection) -> StoreResult<JournalStats> {
    let tx = conn.transaction()?;
    let mut s = JournalStats::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT status, count(*), coalesce(sum(resent_after_doubt), 0) \
             FROM deliveries GROUP BY status",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let status = codec::status(&r.get::<_, String>(0)?, "delivery status count")?;
            let n = codec::count_u64(r.get(1)?, "delivery status count")?;
            s.resent_after_doubt += codec::count_u64(r.get(2)?, "resent after doubt")?;
            match status {
                DeliveryStatus::Pending => s.pending = n,
                DeliveryStatus::InFlight => s.in_flight = n,
                DeliveryStatus::Retrying => s.retrying = n,
                DeliveryStatus::Delivered => s.delivered = n,
                DeliveryStatus::Failed => s.failed = n,
            }
        }
    }
    let (records, rejected): (i64, i64) = tx
        .prepare_cached("SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM rejected)")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    s.records = codec::count_u64(records, "record count")?;
    s.rejected = codec::count_u64(rejected, "rejected count")?;
    tx.finish()?;
    Ok(s)
}

/// Notes matching `f`, newest first (then latest written first).
pub(crate) fn notes(conn: &mut Connection, f: &NoteFilter) -> StoreResult<Vec<JournalNote>> {
    let mut sql = String::from(
        "SELECT id, at, stream, kind, severity, dedupe, message FROM journal_notes WHERE 1 = 1",
    );
    let mut args: Vec<Value> = Vec::new();
    if let Some(t) = f.since {
        args.push(Value::Integer(codec::ts_bound(t)));
        let _ = write!(sql, " AND at >= ?{}", args.len());
    }
    if let Some(k) = &f.kind {
        args.push(Value::Text(k.clone()));
        let _ = write!(sql, " AND kind = ?{}", args.len());
    }
    if let Some(s) = &f.stream {
        args.push(Value::Text(s.clone()));
        let _ = write!(sql, " AND stream = ?{}", args.len());
    }
    args.push(Value::Integer(sql_limit(f.limit)));
    let _ = write!(sql, " ORDER BY at DESC, id DESC LIMIT ?{}", args.len());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let what = format!("journal note {id}");
        let severity: String = r.get(4)?;
        out.push(JournalNote {
            at: codec::ts_from(r.get(1)?, &what)?,
            stream: r.get(2)?,
            kind: r.get(3)?,
            severity: severity
                .parse::<NoteSeverity>()
                .map_err(|_| StoreError::corrupt(format!("{what}: severity `{severity}`")))?,
            dedupe: r.get(5)?,
            message: r.get(6)?,
        });
    }
    Ok(out)
}
