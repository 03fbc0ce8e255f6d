//! Reads: positions, deliveries by filter, attempts, record history, cycles, rejected
//! items, the next due time, stats.

use std::fmt::Write as _;

use jiff::Timestamp;
use ml_core::audit::{
    AttemptView, CycleId, CycleView, DeliveryFilter, DeliveryId, DeliveryStatus, DeliveryView,
    ErrorInfo, JournalNote, JournalStats, NoteFilter, NoteSeverity, PageCommitted, RecordHistory,
    RecordVersion, RejectedView,
};
use ml_core::record::Rejected;
use ml_core::{Destination, Position, Result};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresAuditStore;
use super::error::Db;
use crate::codec::{self, DELIVERY_COLUMNS, DELIVERY_JOIN};

type Args = Vec<Box<dyn ToSql + Sync + Send>>;

pub(crate) async fn load_position(
    s: &PostgresAuditStore,
    stream: &str,
) -> Result<Option<Position>> {
    let ctx = s.ctx("load_position");
    let client = s.client("load_position").await?;
    let stmt = client
        .prepare_cached("SELECT position FROM positions WHERE stream = $1")
        .await
        .db(&ctx)?;
    let Some(row) = client.query_opt(&stmt, &[&stream]).await.db(&ctx)? else {
        return Ok(None);
    };
    let text: String = row.get(0);
    codec::from_json(&text, &format!("position of stream `{stream}`"))
        .map(|v| Some(Position::from_json(v)))
        .db(&ctx)
}

/// The `AND ...` conditions of a filter on `deliveries AS d JOIN records AS r`, numbering
/// its parameters after those already in `args` (which it extends). The limit is left to
/// the caller.
pub(crate) fn filter_clause(f: &DeliveryFilter, args: &mut Args) -> String {
    fn push(sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync + Send>, args: &mut Args) {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", args.len())));
    }
    let mut sql = String::new();
    if let Some(id) = f.id {
        push(&mut sql, " AND d.id = ?", Box::new(id.0), args);
    }
    if let Some(st) = &f.stream {
        push(&mut sql, " AND r.stream = ?", Box::new(st.clone()), args);
    }
    if let Some(k) = &f.record_key {
        push(&mut sql, " AND r.record_key = ?", Box::new(k.clone()), args);
    }
    if let Some(dest) = &f.destination {
        args.push(Box::new(dest.sink.clone()));
        args.push(Box::new(dest.address.clone()));
        let n = args.len();
        let _ = write!(
            sql,
            " AND d.dest_id = (SELECT id FROM destinations WHERE sink = ${} AND address = ${n})",
            n - 1
        );
    }
    if let Some(st) = f.status {
        push(
            &mut sql,
            " AND d.status = ?",
            Box::new(st.as_str().to_owned()),
            args,
        );
    }
    if let Some(t) = f.since {
        push(
            &mut sql,
            " AND d.updated_at >= ?",
            Box::new(codec::ts_bound(t)),
            args,
        );
    }
    if let Some(t) = f.until {
        push(
            &mut sql,
            " AND d.updated_at < ?",
            Box::new(codec::ts_bound(t)),
            args,
        );
    }
    sql
}

fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect()
}

/// A delivery row selected with [`DELIVERY_COLUMNS`].
fn delivery(row: &Row, ctx: &str) -> Result<DeliveryView> {
    let id: i64 = row.get(0);
    let what = format!("delivery {id}");
    let what = what.as_str();
    let status: String = row.get(6);
    let remote: Option<String> = row.get(11);
    let error: Option<String> = row.get(12);
    Ok(DeliveryView {
        id: DeliveryId(id),
        stream: row.get(1),
        record_key: row.get(2),
        record_version: row.get(3),
        destination: Destination {
            sink: row.get(4),
            address: row.get(5),
        },
        status: codec::status(&status, what).db(ctx)?,
        attempts: codec::count_u32(row.get(7), what).db(ctx)?,
        in_doubt: row.get(8),
        resent_after_doubt: codec::count_u32(row.get(9), what).db(ctx)?,
        remote_id: row.get(10),
        remote_status: codec::remote_status(remote.as_deref(), what).db(ctx)?,
        last_error: codec::from_json_opt::<ErrorInfo>(error.as_deref(), what).db(ctx)?,
        created_at: codec::ts_from(row.get(13), what).db(ctx)?,
        updated_at: codec::ts_from(row.get(14), what).db(ctx)?,
        next_attempt_at: codec::ts_from_opt(row.get(15), what).db(ctx)?,
        remote_scope: row.get(16),
    })
}

async fn select_deliveries(
    client: &impl deadpool_postgres::GenericClient,
    clause: &str,
    mut args: Args,
    limit: Option<usize>,
    ctx: &str,
) -> Result<Vec<DeliveryView>> {
    args.push(Box::new(
        limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    ));
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_JOIN} WHERE true{clause} ORDER BY d.id LIMIT ${}",
        args.len()
    );
    let rows = client.query(&sql, &refs(&args)).await.db(ctx)?;
    rows.iter().map(|r| delivery(r, ctx)).collect()
}

pub(crate) async fn deliveries(
    s: &PostgresAuditStore,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryView>> {
    let ctx = s.ctx("deliveries");
    let mut args = Args::new();
    let clause = filter_clause(filter, &mut args);
    let client = s.client("deliveries").await?;
    select_deliveries(&client, &clause, args, filter.limit, &ctx).await
}

pub(crate) async fn attempts(s: &PostgresAuditStore, id: DeliveryId) -> Result<Vec<AttemptView>> {
    let ctx = s.ctx("attempts");
    let client = s.client("attempts").await?;
    let stmt = client
        .prepare_cached(
            "SELECT number, started_at, finished_at, outcome, remote_id, error FROM attempts \
             WHERE delivery_id = $1 ORDER BY number",
        )
        .await
        .db(&ctx)?;
    let rows = client.query(&stmt, &[&id.0]).await.db(&ctx)?;
    rows.iter()
        .map(|r| {
            let number: i64 = r.get(0);
            let what = format!("attempt {number} of delivery {id}");
            let error: Option<String> = r.get(5);
            Ok(AttemptView {
                delivery_id: id,
                number: codec::count_u32(number, &what).db(&ctx)?,
                started_at: codec::ts_from(r.get(1), &what).db(&ctx)?,
                finished_at: codec::ts_from_opt(r.get(2), &what).db(&ctx)?,
                outcome: r.get(3),
                remote_id: r.get(4),
                error: codec::from_json_opt(error.as_deref(), &what).db(&ctx)?,
            })
        })
        .collect()
}

pub(crate) async fn record_history(
    s: &PostgresAuditStore,
    stream: &str,
    key: &str,
) -> Result<RecordHistory> {
    let ctx = s.ctx("record_history");
    let mut client = s.client("record_history").await?;
    // One snapshot for versions and deliveries.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .db(&ctx)?;
    let stmt = tx
        .prepare_cached(
            "SELECT id, body, journaled_at FROM records \
             WHERE stream = $1 AND record_key = $2 ORDER BY id",
        )
        .await
        .db(&ctx)?;
    let rows = tx.query(&stmt, &[&stream, &key]).await.db(&ctx)?;
    let mut versions = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.get(0);
        let what = format!("record {id}");
        let body: String = r.get(1);
        versions.push(RecordVersion {
            record: codec::from_json(&body, &what).db(&ctx)?,
            journaled_at: codec::ts_from(r.get(2), &what).db(&ctx)?,
        });
    }
    let args: Args = vec![Box::new(stream.to_owned()), Box::new(key.to_owned())];
    let deliveries = select_deliveries(
        &tx,
        " AND r.stream = $1 AND r.record_key = $2",
        args,
        None,
        &ctx,
    )
    .await?;
    tx.commit().await.db(&ctx)?;
    Ok(RecordHistory {
        versions,
        deliveries,
    })
}

/// The newest remote scope given to a message to `d`.
pub(crate) async fn destination_scope(
    s: &PostgresAuditStore,
    d: &Destination,
) -> Result<Option<String>> {
    let ctx = s.ctx("destination scope");
    let client = s.client("destination scope").await?;
    let stmt = client
        .prepare_cached(
            "SELECT d.remote_scope FROM deliveries AS d \
               JOIN destinations AS dst ON dst.id = d.dest_id \
             WHERE dst.sink = $1 AND dst.address = $2 AND d.remote_scope IS NOT NULL \
             ORDER BY d.id DESC LIMIT 1",
        )
        .await
        .db(&ctx)?;
    let row = client
        .query_opt(&stmt, &[&d.sink, &d.address])
        .await
        .db(&ctx)?;
    Ok(row.and_then(|r| r.get(0)))
}

pub(crate) async fn last_send_end(
    s: &PostgresAuditStore,
    d: &Destination,
) -> Result<Option<Timestamp>> {
    let ctx = s.ctx("last send end");
    let client = s.client("last send end").await?;
    let stmt = client
        .prepare_cached("SELECT last_send_end FROM destinations WHERE sink = $1 AND address = $2")
        .await
        .db(&ctx)?;
    let ns: Option<i64> = client
        .query_opt(&stmt, &[&d.sink, &d.address])
        .await
        .db(&ctx)?
        .and_then(|r| r.get(0));
    codec::ts_from_opt(ns, &format!("the last send end of {d}")).db(&ctx)
}

pub(crate) async fn cycles(
    s: &PostgresAuditStore,
    stream: &str,
    limit: usize,
) -> Result<Vec<CycleView>> {
    let ctx = s.ctx("cycles");
    let client = s.client("cycles").await?;
    let stmt = client
        .prepare_cached(
            "SELECT id, stream, started_at, finished_at, pages, inserted, duplicates, rejected, \
               deliveries, error, position, watermark \
             FROM cycles WHERE stream = $1 ORDER BY id DESC LIMIT $2",
        )
        .await
        .db(&ctx)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client.query(&stmt, &[&stream, &limit]).await.db(&ctx)?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let what = format!("cycle {id}");
            let error: Option<String> = r.get(9);
            let position: Option<String> = r.get(10);
            Ok(CycleView {
                id: CycleId(id),
                stream: r.get(1),
                started_at: codec::ts_from(r.get(2), &what).db(&ctx)?,
                finished_at: codec::ts_from_opt(r.get(3), &what).db(&ctx)?,
                pages: codec::count_u64(r.get(4), &what).db(&ctx)?,
                counts: PageCommitted {
                    inserted: codec::count_u64(r.get(5), &what).db(&ctx)?,
                    duplicates: codec::count_u64(r.get(6), &what).db(&ctx)?,
                    rejected: codec::count_u64(r.get(7), &what).db(&ctx)?,
                    deliveries: codec::count_u64(r.get(8), &what).db(&ctx)?,
                },
                error: codec::from_json_opt(error.as_deref(), &what).db(&ctx)?,
                position: codec::from_json_opt(position.as_deref(), &what)
                    .db(&ctx)?
                    .map(Position::from_json),
                watermark: codec::ts_from_opt(r.get(11), &what).db(&ctx)?,
            })
        })
        .collect()
}

pub(crate) async fn rejected(
    s: &PostgresAuditStore,
    stream: Option<&str>,
    limit: usize,
) -> Result<Vec<RejectedView>> {
    let ctx = s.ctx("rejected");
    let client = s.client("rejected").await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let stmt = client
        .prepare_cached(
            "SELECT id, stream, item, at FROM rejected \
             WHERE ($1::text IS NULL OR stream = $1) ORDER BY id DESC LIMIT $2",
        )
        .await
        .db(&ctx)?;
    let rows = client.query(&stmt, &[&stream, &limit]).await.db(&ctx)?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let what = format!("rejected item {id}");
            let item: String = r.get(2);
            Ok(RejectedView {
                stream: r.get(1),
                item: codec::from_json::<Rejected>(&item, &what).db(&ctx)?,
                at: codec::ts_from(r.get(3), &what).db(&ctx)?,
            })
        })
        .collect()
}

pub(crate) async fn next_due_at(s: &PostgresAuditStore) -> Result<Option<Timestamp>> {
    let ctx = s.ctx("next_due_at");
    let client = s.client("next_due_at").await?;
    // Only heads of line count (see `AuditQuery::next_due_at`): one seek per destination
    // with work, as for a claim.
    let stmt = client
        .prepare_cached(concat!(
            super::deliver::heads_cte!(),
            "SELECT min(coalesce(d.next_attempt_at, 0)) FROM heads \
             JOIN deliveries AS d ON d.id = heads.id \
             WHERE d.status IN ('pending', 'retrying')"
        ))
        .await
        .db(&ctx)?;
    let ns: Option<i64> = client.query_one(&stmt, &[]).await.db(&ctx)?.get(0);
    codec::ts_from_opt(ns, "next due time").db(&ctx)
}

pub(crate) async fn streams(s: &PostgresAuditStore) -> Result<Vec<String>> {
    let ctx = s.ctx("streams");
    let client = s.client("streams").await?;
    let stmt = client
        .prepare_cached("SELECT stream FROM positions ORDER BY stream")
        .await
        .db(&ctx)?;
    let rows = client.query(&stmt, &[]).await.db(&ctx)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(crate) async fn stats(s: &PostgresAuditStore) -> Result<JournalStats> {
    let ctx = s.ctx("stats");
    let mut client = s.client("stats").await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .db(&ctx)?;
    let mut out = JournalStats::default();
    let rows = tx
        .query(
            "SELECT status, count(*), coalesce(sum(resent_after_doubt), 0)::bigint \
             FROM deliveries GROUP BY status",
            &[],
        )
        .await
        .db(&ctx)?;
    for r in &rows {
        let status: String = r.get(0);
        let status = codec::status(&status, "delivery status count").db(&ctx)?;
        let n = codec::count_u64(r.get(1), "delivery status count").db(&ctx)?;
        out.resent_after_doubt += codec::count_u64(r.get(2), "resent after doubt").db(&ctx)?;
        match status {
            DeliveryStatus::Pending => out.pending = n,
            DeliveryStatus::InFlight => out.in_flight = n,
            DeliveryStatus::Retrying => out.retrying = n,
            DeliveryStatus::Delivered => out.delivered = n,
            DeliveryStatus::Failed => out.failed = n,
        }
    }
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM rejected)",
            &[],
        )
        .await
        .db(&ctx)?;
    out.records = codec::count_u64(row.get(0), "record count").db(&ctx)?;
    out.rejected = codec::count_u64(row.get(1), "rejected count").db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(out)
}

/// Notes matching `f`, newest first (then latest written first).
pub(crate) async fn notes(s: &PostgresAuditStore, f: &NoteFilter) -> Result<Vec<JournalNote>> {
    let ctx = s.ctx("notes");
    let mut args = Args::new();
    let mut sql = String::from(
        "SELECT id, at, stream, kind, severity, dedupe, message FROM journal_notes WHERE true",
    );
    if let Some(t) = f.since {
        args.push(Box::new(codec::ts_bound(t)));
        let _ = write!(sql, " AND at >= ${}", args.len());
    }
    if let Some(k) = &f.kind {
        args.push(Box::new(k.clone()));
        let _ = write!(sql, " AND kind = ${}", args.len());
    }
    if let Some(st) = &f.stream {
        args.push(Box::new(st.clone()));
        let _ = write!(sql, " AND stream = ${}", args.len());
    }
    args.push(Box::new(
        f.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    ));
    let _ = write!(sql, " ORDER BY at DESC, id DESC LIMIT ${}", args.len());
    let client = s.client("notes").await?;
    let rows = client.query(&sql, &refs(&args)).await.db(&ctx)?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let what = format!("journal note {id}");
            let severity: String = r.get(4);
            Ok(JournalNote {
                at: codec::ts_from(r.get(1), &what).db(&ctx)?,
                stream: r.get(2),
                kind: r.get(3),
                severity: severity.parse::<NoteSeverity>().map_err(|_| {
                    ml_core::Error::Corrupt(format!("{ctx}: {what}: severity `{severity}`"))
                })?,
                dedupe: r.get(5),
                message: r.get(6),
            })
        })
        .collect()
}
