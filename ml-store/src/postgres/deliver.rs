//! Delivery state changes: claim (`FOR UPDATE SKIP LOCKED`), finish, recovery by lease,
//! stream leases, replay, status callbacks. Each is one transaction.

use std::collections::HashMap;

use jiff::Timestamp;
use ml_core::audit::{
    AttemptOutcome, CallbackApplied, CallbackUpdate, Claimant, ClaimedDelivery, DeliveryFilter,
    DeliveryId, DeliveryStatus, ErrorInfo,
};
use ml_core::sink::Receipt;
use ml_core::{Destination, Error, Record, Result};
use tokio_postgres::types::ToSql;

use super::PostgresAuditStore;
use super::error::Db;
use super::query::filter_clause;
use crate::codec;

/// The heads of line as the CTE `heads(id)`: per destination with work, the id of its
/// oldest delivery that is pending, in flight or retrying.
macro_rules! heads_cte {
    () => {
        "
WITH RECURSIVE dests(dest_id) AS (
    (SELECT f.dest_id FROM deliveries AS f
     WHERE f.status IN ('pending', 'in_flight', 'retrying')
     ORDER BY f.dest_id LIMIT 1)
    UNION ALL
    SELECT (SELECT n.dest_id FROM deliveries AS n
            WHERE n.status IN ('pending', 'in_flight', 'retrying') AND n.dest_id > dests.dest_id
            ORDER BY n.dest_id LIMIT 1)
    FROM dests WHERE dests.dest_id IS NOT NULL
),
heads(id) AS (
    SELECT (SELECT h.id FROM deliveries AS h
            WHERE h.status IN ('pending', 'in_flight', 'retrying') AND h.dest_id = dests.dest_id
            ORDER BY h.id LIMIT 1)
    FROM dests WHERE dests.dest_id IS NOT NULL
)
"
    };
}
pub(crate) use heads_cte;

/// The claimable heads of line, oldest first, locked: per destination the oldest delivery
/// that is pending, in flight or retrying (walked with a loose index scan over the partial
/// index `deliveries_head`: one seek per destination with work, whatever the backlog),
/// kept when it is pending, or retrying and due. `SKIP LOCKED`: a head another replica is
/// claiming right now is left to it; the committed state is re-checked on the locked row,
/// so a head that another replica claimed since this statement's snapshot is not taken.
const CLAIMABLE_HEADS: &str = concat!(
    heads_cte!(),
    "
SELECT d.id FROM heads JOIN deliveries AS d ON d.id = heads.id
WHERE d.status = 'pending'
   OR (d.status = 'retrying' AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $1))
ORDER BY d.id
LIMIT $2
FOR UPDATE OF d SKIP LOCKED"
);

/// A claimed row, before its record is read.
struct ClaimRow {
    id: i64,
    record_id: i64,
    dest_id: i64,
    attempts: i64,
    in_doubt: bool,
    created: i64,
    first: i64,
    round: i64,
}

pub(crate) async fn claim_due(
    s: &PostgresAuditStore,
    by: &Claimant,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>> {
    let ctx = s.ctx("claim_due");
    let now_ns = codec::ts(now).db(&ctx)?;
    let lease_ns = codec::ts(by.lease_until(now)).db(&ctx)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut client = s.client("claim_due").await?;
    let tx = client.transaction().await.db(&ctx)?;
    let heads = tx.prepare_cached(CLAIMABLE_HEADS).await.db(&ctx)?;
    let ids: Vec<i64> = tx
        .query(&heads, &[&now_ns, &limit])
        .await
        .db(&ctx)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        tx.commit().await.db(&ctx)?;
        return Ok(Vec::new());
    }
    let update = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'in_flight', attempts = attempts + 1, \
               updated_at = $2, next_attempt_at = NULL, \
               first_attempt_at = coalesce(first_attempt_at, $2), \
               claimed_by = $3, lease_until = $4 \
             WHERE id = ANY($1) AND status IN ('pending', 'retrying') \
             RETURNING id, record_id, dest_id, attempts, in_doubt, created_at, first_attempt_at, \
               attempts - round_base",
        )
        .await
        .db(&ctx)?;
    let mut rows: Vec<ClaimRow> = tx
        .query(&update, &[&ids, &now_ns, &by.owner.as_str(), &lease_ns])
        .await
        .db(&ctx)?
        .iter()
        .map(|r| ClaimRow {
            id: r.get(0),
            record_id: r.get(1),
            dest_id: r.get(2),
            attempts: r.get(3),
            in_doubt: r.get(4),
            created: r.get(5),
            first: r.get(6),
            round: r.get(7),
        })
        .collect();
    rows.sort_by_key(|r| r.id);
    let claimed: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let numbers: Vec<i64> = rows.iter().map(|r| r.attempts).collect();
    let open = tx
        .prepare_cached(
            "INSERT INTO attempts (delivery_id, number, started_at) \
             SELECT u.id, u.n, $3 FROM unnest($1::bigint[], $2::bigint[]) AS u(id, n)",
        )
        .await
        .db(&ctx)?;
    tx.execute(&open, &[&claimed, &numbers, &now_ns])
        .await
        .db(&ctx)?;
    let record_ids: Vec<i64> = rows.iter().map(|r| r.record_id).collect();
    let read = tx
        .prepare_cached("SELECT id, stream, record_key, body FROM records WHERE id = ANY($1)")
        .await
        .db(&ctx)?;
    let records: HashMap<i64, (String, String, String)> = tx
        .query(&read, &[&record_ids])
        .await
        .db(&ctx)?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let dest_ids: Vec<i64> = rows.iter().map(|r| r.dest_id).collect();
    let read = tx
        .prepare_cached("SELECT id, sink, address FROM destinations WHERE id = ANY($1)")
        .await
        .db(&ctx)?;
    let dests: HashMap<i64, Destination> = tx
        .query(&read, &[&dest_ids])
        .await
        .db(&ctx)?
        .iter()
        .map(|r| {
            (
                r.get(0),
                Destination {
                    sink: r.get(1),
                    address: r.get(2),
                },
            )
        })
        .collect();
    // The first delivered receipt for the same stream, record key and destination (any
    // version of the record).
    let thread = tx
        .prepare_cached(
            "SELECT d.remote_id, d.remote_scope \
             FROM records AS r JOIN deliveries AS d ON d.record_id = r.id \
             WHERE r.stream = $1 AND r.record_key = $2 AND d.dest_id = $3 AND d.id < $4 \
               AND d.remote_id IS NOT NULL \
             ORDER BY d.id LIMIT 1",
        )
        .await
        .db(&ctx)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let what = format!("delivery {}", row.id);
        let (stream, record_key, body) = records.get(&row.record_id).ok_or_else(|| {
            Error::Corrupt(format!(
                "{ctx}: {what}: its record {} is missing",
                row.record_id
            ))
        })?;
        let record: Record = match codec::from_json(body, &format!("record {}", row.record_id)) {
            Ok(r) => r,
            Err(e) => {
                quarantine(&tx, &row, now_ns, &e.to_string(), &ctx).await?;
                continue;
            }
        };
        let destination = dests.get(&row.dest_id).cloned().ok_or_else(|| {
            Error::Corrupt(format!(
                "{ctx}: {what}: destination {} is missing",
                row.dest_id
            ))
        })?;
        let thread = tx
            .query_opt(&thread, &[stream, record_key, &row.dest_id, &row.id])
            .await
            .db(&ctx)?
            .map(|r| Receipt {
                remote_id: r.get(0),
                remote_scope: r.get(1),
                status: None,
            });
        out.push(ClaimedDelivery {
            id: DeliveryId(row.id),
            stream: stream.clone(),
            destination,
            record,
            attempt: codec::count_u32(row.attempts, &what).db(&ctx)?,
            round_attempt: codec::count_u32(row.round, &what).db(&ctx)?,
            in_doubt: row.in_doubt,
            thread,
            created_at: codec::ts_from(row.created, &what).db(&ctx)?,
            first_attempt_at: codec::ts_from(row.first, &what).db(&ctx)?,
        });
    }
    tx.commit().await.db(&ctx)?;
    Ok(out)
}

/// A record row that cannot be decoded must not stop every delivery: the claimed delivery
/// and the record's other waiting deliveries fail with the reason, visible in `audit`.
async fn quarantine(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &ClaimRow,
    now_ns: i64,
    cause: &str,
    ctx: &str,
) -> Result<()> {
    let error = ErrorInfo {
        class: "permanent".into(),
        code: Some("journal_corrupt".into()),
        message: format!("quarantined: the journaled record cannot be read: {cause}"),
    };
    let json = codec::to_json(&error).db(ctx)?;
    tx.execute(
        "UPDATE attempts SET finished_at = $3, outcome = 'failed', error = $4 \
         WHERE delivery_id = $1 AND number = $2",
        &[&row.id, &row.attempts, &now_ns, &json],
    )
    .await
    .db(ctx)?;
    let n = tx
        .execute(
            "UPDATE deliveries SET status = 'failed', last_error = $3, updated_at = $4, \
               next_attempt_at = NULL, claimed_by = NULL, lease_until = NULL \
             WHERE record_id = $1 AND (id = $2 OR status IN ('pending', 'retrying'))",
            &[&row.record_id, &row.id, &json, &now_ns],
        )
        .await
        .db(ctx)?;
    tracing::error!(record = row.record_id, deliveries = n, error = %cause, "corrupt journal record quarantined");
    metrics::counter!("ml_journal_quarantined_total").increment(n);
    Ok(())
}

/// The status and attempt count of a delivery, locked for the transaction, or `NotFound`.
async fn current(
    tx: &deadpool_postgres::Transaction<'_>,
    id: DeliveryId,
    ctx: &str,
) -> Result<(DeliveryStatus, i64)> {
    let stmt = tx
        .prepare_cached("SELECT status, attempts FROM deliveries WHERE id = $1 FOR UPDATE")
        .await
        .db(ctx)?;
    let row = tx
        .query_opt(&stmt, &[&id.0])
        .await
        .db(ctx)?
        .ok_or_else(|| Error::NotFound(format!("delivery {id}")))?;
    let status: String = row.get(0);
    Ok((
        codec::status(&status, &format!("delivery {id}")).db(ctx)?,
        row.get(1),
    ))
}

pub(crate) async fn finish_attempt(
    s: &PostgresAuditStore,
    id: DeliveryId,
    outcome: &AttemptOutcome,
    at: Timestamp,
) -> Result<()> {
    let ctx = s.ctx("finish_attempt");
    let at_ns = codec::ts(at).db(&ctx)?;
    let mut client = s.client("finish_attempt").await?;
    let tx = client.transaction().await.db(&ctx)?;
    let (status, attempts) = current(&tx, id, &ctx).await?;
    if status != DeliveryStatus::InFlight {
        return Err(Error::InvalidState(format!(
            "delivery {id} is {status}, not in flight"
        )));
    }
    let (remote_id, error): (Option<&str>, Option<&ErrorInfo>) = match outcome {
        AttemptOutcome::Delivered {
            receipt,
            after_doubt,
        } => {
            delivered(&tx, id, receipt, *after_doubt, at_ns, &ctx).await?;
            (Some(&receipt.remote_id), None)
        }
        AttemptOutcome::Reconciled(receipt) => {
            delivered(&tx, id, receipt, false, at_ns, &ctx).await?;
            (Some(&receipt.remote_id), None)
        }
        AttemptOutcome::Retry {
            error,
            next_at,
            in_doubt,
        } => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'retrying', next_attempt_at = $2, \
                       in_doubt = $3, last_error = $4, updated_at = $5, \
                       claimed_by = NULL, lease_until = NULL \
                     WHERE id = $1",
                )
                .await
                .db(&ctx)?;
            let next = codec::ts(*next_at).db(&ctx)?;
            let json = codec::to_json(error).db(&ctx)?;
            tx.execute(&stmt, &[&id.0, &next, in_doubt, &json, &at_ns])
                .await
                .db(&ctx)?;
            (None, Some(error))
        }
        AttemptOutcome::Failed(error) => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'failed', last_error = $2, updated_at = $3, \
                       claimed_by = NULL, lease_until = NULL \
                     WHERE id = $1",
                )
                .await
                .db(&ctx)?;
            let json = codec::to_json(error).db(&ctx)?;
            tx.execute(&stmt, &[&id.0, &json, &at_ns]).await.db(&ctx)?;
            (None, Some(error))
        }
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE attempts SET finished_at = $3, outcome = $4, remote_id = $5, error = $6 \
             WHERE delivery_id = $1 AND number = $2",
        )
        .await
        .db(&ctx)?;
    let error = codec::to_json_opt(error).db(&ctx)?;
    tx.execute(
        &stmt,
        &[
            &id.0,
            &attempts,
            &at_ns,
            &outcome.label(),
            &remote_id,
            &error,
        ],
    )
    .await
    .db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(())
}

async fn delivered(
    tx: &deadpool_postgres::Transaction<'_>,
    id: DeliveryId,
    receipt: &Receipt,
    after_doubt: bool,
    at: i64,
    ctx: &str,
) -> Result<()> {
    // A new remote message (a replay's) starts with no remote status and no error; the old
    // message id is replaced, so its late callbacks no longer match. A status a callback
    // already reported for this very message (it overtook the answer) is kept, and a
    // failure it reported fails the delivery with its error.
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET \
               status = CASE WHEN remote_id IS NOT DISTINCT FROM $2 \
                 AND remote_status IN ('undelivered', 'failed') THEN 'failed' ELSE 'delivered' END, \
               in_doubt = false, \
               remote_status = CASE WHEN remote_id IS NOT DISTINCT FROM $2 \
                 THEN remote_status ELSE NULL END, \
               last_error = CASE WHEN remote_id IS NOT DISTINCT FROM $2 \
                 AND remote_status IN ('undelivered', 'failed') THEN last_error ELSE NULL END, \
               remote_id = $2, remote_scope = $3, next_attempt_at = NULL, \
               resent_after_doubt = resent_after_doubt + $4, updated_at = $5, \
               claimed_by = NULL, lease_until = NULL \
             WHERE id = $1",
        )
        .await
        .db(ctx)?;
    tx.execute(
        &stmt,
        &[
            &id.0,
            &receipt.remote_id,
            &receipt.remote_scope,
            &i64::from(after_doubt),
            &at,
        ],
    )
    .await
    .db(ctx)?;
    Ok(())
}

/// In flight and takeable by `$2`: its own, or a lease that ran out at `$1`.
const TAKEABLE: &str = "status = 'in_flight' AND (claimed_by IS NULL OR claimed_by = $2 \
                        OR lease_until IS NULL OR lease_until <= $1)";

pub(crate) async fn requeue_in_flight(
    s: &PostgresAuditStore,
    by: &Claimant,
    now: Timestamp,
) -> Result<u64> {
    let ctx = s.ctx("requeue_in_flight");
    let now = codec::ts(now).db(&ctx)?;
    let owner = by.owner.as_str();
    let mut client = s.client("requeue_in_flight").await?;
    let tx = client.transaction().await.db(&ctx)?;
    // Rows being finished right now by their (live) owner are locked: skipped, they are
    // about to leave the in-flight state anyway.
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT id, attempts FROM deliveries WHERE {TAKEABLE} ORDER BY id \
             FOR UPDATE SKIP LOCKED"
        ))
        .await
        .db(&ctx)?;
    let rows = tx.query(&stmt, &[&now, &owner]).await.db(&ctx)?;
    if rows.is_empty() {
        tx.commit().await.db(&ctx)?;
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let numbers: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE attempts AS a SET finished_at = $3, outcome = 'interrupted' \
             FROM unnest($1::bigint[], $2::bigint[]) AS u(id, n) \
             WHERE a.delivery_id = u.id AND a.number = u.n",
        )
        .await
        .db(&ctx)?;
    tx.execute(&stmt, &[&ids, &numbers, &now]).await.db(&ctx)?;
    // Their sends may have arrived at any moment up to now.
    let stmt = tx
        .prepare_cached(
            "UPDATE destinations SET last_send_end = GREATEST(last_send_end, $2) \
             WHERE id IN (SELECT dest_id FROM deliveries WHERE id = ANY($1))",
        )
        .await
        .db(&ctx)?;
    tx.execute(&stmt, &[&ids, &now]).await.db(&ctx)?;
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'retrying', in_doubt = true, next_attempt_at = $2, \
               updated_at = $2, claimed_by = NULL, lease_until = NULL \
             WHERE id = ANY($1)",
        )
        .await
        .db(&ctx)?;
    let n = tx.execute(&stmt, &[&ids, &now]).await.db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    if n > 0 {
        tracing::debug!(journal = %s.label(), owner, requeued = n, "in-flight deliveries requeued");
    }
    Ok(n)
}

/// Keeps the latest send end per destination: one upsert, destinations in a fixed order
/// (two replicas upserting the same rows cannot deadlock).
pub(crate) async fn record_send_ends(
    s: &PostgresAuditStore,
    ends: &[(Destination, Timestamp)],
) -> Result<()> {
    let ctx = s.ctx("record_send_ends");
    let latest = ml_core::audit::latest_send_ends(ends);
    if latest.is_empty() {
        return Ok(());
    }
    let mut sinks = Vec::with_capacity(latest.len());
    let mut addresses = Vec::with_capacity(latest.len());
    let mut ats = Vec::with_capacity(latest.len());
    for (d, at) in latest {
        sinks.push(d.sink.clone());
        addresses.push(d.address.clone());
        ats.push(codec::ts(at).db(&ctx)?);
    }
    let client = s.client("record_send_ends").await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO destinations (sink, address, last_send_end) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
             ON CONFLICT (sink, address) DO UPDATE SET \
               last_send_end = GREATEST(destinations.last_send_end, excluded.last_send_end)",
        )
        .await
        .db(&ctx)?;
    client
        .execute(&stmt, &[&sinks, &addresses, &ats])
        .await
        .db(&ctx)?;
    Ok(())
}

pub(crate) async fn renew_claims(
    s: &PostgresAuditStore,
    by: &Claimant,
    ids: &[DeliveryId],
    now: Timestamp,
) -> Result<u64> {
    let ctx = s.ctx("renew_claims");
    let until = codec::ts(by.lease_until(now)).db(&ctx)?;
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let client = s.client("renew_claims").await?;
    let stmt = client
        .prepare_cached(
            "UPDATE deliveries SET lease_until = $3 \
             WHERE id = ANY($1) AND status = 'in_flight' AND claimed_by = $2",
        )
        .await
        .db(&ctx)?;
    client
        .execute(&stmt, &[&ids, &by.owner.as_str(), &until])
        .await
        .db(&ctx)
}

pub(crate) async fn acquire_stream(
    s: &PostgresAuditStore,
    stream: &str,
    by: &Claimant,
    now: Timestamp,
) -> Result<bool> {
    let ctx = s.ctx("acquire_stream");
    let now_ns = codec::ts(now).db(&ctx)?;
    let until = codec::ts(by.lease_until(now)).db(&ctx)?;
    let client = s.client("acquire_stream").await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO stream_leases (stream, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (stream) DO UPDATE SET owner = excluded.owner, \
               lease_until = excluded.lease_until \
             WHERE stream_leases.owner = excluded.owner OR stream_leases.lease_until <= $4",
        )
        .await
        .db(&ctx)?;
    let n = client
        .execute(&stmt, &[&stream, &by.owner.as_str(), &until, &now_ns])
        .await
        .db(&ctx)?;
    Ok(n > 0)
}

pub(crate) async fn release_stream(
    s: &PostgresAuditStore,
    stream: &str,
    by: &Claimant,
) -> Result<()> {
    let ctx = s.ctx("release_stream");
    let client = s.client("release_stream").await?;
    let stmt = client
        .prepare_cached("DELETE FROM stream_leases WHERE stream = $1 AND owner = $2")
        .await
        .db(&ctx)?;
    client
        .execute(&stmt, &[&stream, &by.owner.as_str()])
        .await
        .db(&ctx)?;
    Ok(())
}

/// See `AuditWrite::rename_stream`.
pub(crate) async fn rename_stream(s: &PostgresAuditStore, from: &str, to: &str) -> Result<bool> {
    const NAMED: &str = "SELECT EXISTS (SELECT 1 FROM positions WHERE stream = $1) \
           OR EXISTS (SELECT 1 FROM records WHERE stream = $1) \
           OR EXISTS (SELECT 1 FROM rejected WHERE stream = $1)";
    let ctx = s.ctx("rename_stream");
    let mut client = s.client("rename_stream").await?;
    let tx = client.transaction().await.db(&ctx)?;
    // Two processes renaming at once: one waits for the other, then finds it done.
    tx.execute("LOCK TABLE positions IN EXCLUSIVE MODE", &[])
        .await
        .db(&ctx)?;
    let to_named: bool = tx.query_one(NAMED, &[&to]).await.db(&ctx)?.get(0);
    if to_named {
        return Err(Error::InvalidState(format!(
            "cannot rename stream `{from}` to `{to}`: the journal already has a stream `{to}`"
        )));
    }
    let from_named: bool = tx.query_one(NAMED, &[&from]).await.db(&ctx)?.get(0);
    if !from_named {
        return Ok(false);
    }
    for table in [
        "positions",
        "cycles",
        "records",
        "rejected",
        "journal_notes",
    ] {
        tx.execute(
            &format!("UPDATE {table} SET stream = $2 WHERE stream = $1"),
            &[&from, &to],
        )
        .await
        .db(&ctx)?;
    }
    tx.execute("DELETE FROM stream_leases WHERE stream = $1", &[&from])
        .await
        .db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(true)
}

/// See `AuditWrite::retry_held_now`: a hold is the only retry of a permanent error.
pub(crate) async fn retry_held_now(s: &PostgresAuditStore, now: Timestamp) -> Result<u64> {
    let ctx = s.ctx("retry_held_now");
    let now = codec::ts(now).db(&ctx)?;
    let client = s.client("retry_held_now").await?;
    client
        .execute(
            "UPDATE deliveries SET next_attempt_at = $1 \
             WHERE status = 'retrying' AND next_attempt_at > $1 \
               AND (last_error::jsonb ->> 'class') = 'permanent'",
            &[&now],
        )
        .await
        .db(&ctx)
}

pub(crate) async fn replay(s: &PostgresAuditStore, id: DeliveryId, now: Timestamp) -> Result<()> {
    let ctx = s.ctx("replay");
    let now = codec::ts(now).db(&ctx)?;
    let mut client = s.client("replay").await?;
    let tx = client.transaction().await.db(&ctx)?;
    let (status, _) = current(&tx, id, &ctx).await?;
    if status != DeliveryStatus::Failed {
        return Err(Error::InvalidState(format!(
            "delivery {id} is {status}; only failed deliveries can be replayed"
        )));
    }
    // A replay starts a new retry round: a fresh budget of attempts and time.
    tx.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1, \
           round_base = attempts, first_attempt_at = NULL WHERE id = $2",
        &[&now, &id.0],
    )
    .await
    .db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(())
}

/// See `AuditWrite::replay_failed` and, with `to`, `AuditWrite::replay_failed_to`.
pub(crate) async fn replay_failed(
    s: &PostgresAuditStore,
    filter: &DeliveryFilter,
    to: Option<&Destination>,
    now: Timestamp,
) -> Result<u64> {
    let ctx = s.ctx("replay_failed");
    let now = codec::ts(now).db(&ctx)?;
    let mut client = s.client("replay_failed").await?;
    let tx = client.transaction().await.db(&ctx)?;
    let dest: Option<i64> = match to {
        Some(to) => Some(
            tx.query_one(
                "INSERT INTO destinations (sink, address) VALUES ($1, $2) \
                 ON CONFLICT (sink, address) DO UPDATE SET sink = excluded.sink RETURNING id",
                &[&to.sink, &to.address],
            )
            .await
            .db(&ctx)?
            .get(0),
        ),
        None => None,
    };
    let limit = filter.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(now), Box::new(limit), Box::new(dest)];
    let clause = filter_clause(filter, &mut args);
    // $3: the new destination (NULL: the same one); a record that already has a live or
    // sent delivery there keeps its failed one.
    let sql = format!(
        "UPDATE deliveries SET status = 'pending', dest_id = coalesce($3::bigint, dest_id), \
           remote_scope = CASE WHEN $3::bigint IS NULL THEN remote_scope END, \
           next_attempt_at = $1, updated_at = $1, round_base = attempts, first_attempt_at = NULL \
         WHERE id IN (SELECT d.id FROM deliveries AS d JOIN records AS r ON r.id = d.record_id \
                      WHERE d.status = 'failed'{clause} \
                        AND ($3::bigint IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS t \
                          WHERE t.record_id = d.record_id AND t.dest_id = $3::bigint \
                            AND t.status <> 'failed')) \
                      ORDER BY d.id LIMIT $2)"
    );
    let params: Vec<&(dyn ToSql + Sync)> =
        args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    let n = tx.execute(&sql, &params).await.db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(n)
}

pub(crate) async fn apply_callback(
    s: &PostgresAuditStore,
    update: &CallbackUpdate,
) -> Result<CallbackApplied> {
    let ctx = s.ctx("apply_callback");
    let at = codec::ts(update.at).db(&ctx)?;
    let mut client = s.client("apply_callback").await?;
    let tx = client.transaction().await.db(&ctx)?;
    // Should two deliveries share a remote id, the newest (highest id) gets the callback.
    let stmt = tx
        .prepare_cached(
            "SELECT id, status, remote_status, updated_at FROM deliveries \
             WHERE remote_id = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE",
        )
        .await
        .db(&ctx)?;
    let Some(row) = tx.query_opt(&stmt, &[&update.remote_id]).await.db(&ctx)? else {
        let Some(named) = update.delivery else {
            return Ok(CallbackApplied::UnknownRemoteId);
        };
        // Ahead of its send's answer: kept on the delivery while it is in flight (the
        // finish keeps it when the receipt has the same remote id).
        let error = update
            .status
            .is_failure()
            .then(|| codec::to_json(&update.failure_info()))
            .transpose()
            .db(&ctx)?;
        let stmt = tx
            .prepare_cached(
                "UPDATE deliveries SET remote_id = $2, remote_status = $3, \
                   last_error = coalesce($4, last_error), updated_at = greatest(updated_at, $5) \
                 WHERE id = $1 AND status = 'in_flight'",
            )
            .await
            .db(&ctx)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &named.0,
                    &update.remote_id,
                    &update.status.as_str(),
                    &error,
                    &at,
                ],
            )
            .await
            .db(&ctx)?;
        tx.commit().await.db(&ctx)?;
        return Ok(if n == 1 {
            CallbackApplied::Applied(named)
        } else {
            CallbackApplied::UnknownRemoteId
        });
    };
    let (id, status, remote, updated_at): (i64, String, Option<String>, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let what = format!("delivery {id}");
    let status = codec::status(&status, &what).db(&ctx)?;
    let remote = codec::remote_status(remote.as_deref(), &what).db(&ctx)?;
    if remote.is_some_and(|cur| !update.status.supersedes(cur)) {
        return Ok(CallbackApplied::Stale(DeliveryId(id)));
    }
    let fails = update.status.is_failure() && status == DeliveryStatus::Delivered;
    let (new_status, error) = if fails {
        (
            DeliveryStatus::Failed,
            Some(codec::to_json(&update.failure_info()).db(&ctx)?),
        )
    } else {
        (status, None)
    };
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries SET remote_status = $2, updated_at = $3, status = $4, \
               last_error = coalesce($5, last_error) \
             WHERE id = $1",
        )
        .await
        .db(&ctx)?;
    tx.execute(
        &stmt,
        &[
            &id,
            &update.status.as_str(),
            &updated_at.max(at),
            &new_status.as_str(),
            &error,
        ],
    )
    .await
    .db(&ctx)?;
    tx.commit().await.db(&ctx)?;
    Ok(CallbackApplied::Applied(DeliveryId(id)))
}
