//! Delivery state changes: claim, finish, crash recovery, replay, status callbacks. Each
//! is one `BEGIN IMMEDIATE` transaction.

use jiff::Timestamp;
use std::collections::HashSet;

use ml_core::audit::{
    AttemptOutcome, CallbackApplied, CallbackUpdate, Claimant, ClaimedDelivery, DeliveryFilter,
    DeliveryId, DeliveryStatus, ErrorInfo, FinishedAttempt, RunLengths,
};
use ml_core::sink::Receipt;
use ml_core::{Destination, Error, Record};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::body::Body;
use crate::codec::{self, sql_limit};
use crate::error::{StoreError, StoreResult};
use crate::query::filter_clause;
use crate::recent::Recent;

/// The heads of line as the CTE `heads(id)`: per destination with work, the id of its
/// oldest delivery that is pending, in flight or retrying.
macro_rules! heads_cte {
    () => {
        "
WITH RECURSIVE dests(dest_id) AS (
    SELECT (SELECT f.dest_id FROM deliveries AS f INDEXED BY deliveries_head
            WHERE f.status NOT IN ('delivered', 'failed')
            ORDER BY f.dest_id LIMIT 1)
    UNION ALL
    SELECT (SELECT n.dest_id FROM deliveries AS n INDEXED BY deliveries_head
            WHERE n.status NOT IN ('delivered', 'failed') AND n.dest_id > dests.dest_id
            ORDER BY n.dest_id LIMIT 1)
    FROM dests WHERE dests.dest_id IS NOT NULL
),
heads(id) AS (
    SELECT (SELECT h.id FROM deliveries AS h INDEXED BY deliveries_head
            WHERE h.status NOT IN ('delivered', 'failed') AND h.dest_id = dests.dest_id
            ORDER BY h.id LIMIT 1)
    FROM dests WHERE dests.dest_id IS NOT NULL
)
"
    };
}
pub(crate) use heads_cte;

/// The claimable heads of line, oldest first: per destination the oldest delivery that is
/// pending, in flight or retrying (the partial index `deliveries_head`), kept when it is
/// pending, or retrying and due.
///
/// The limit is appended as a literal: the bundled SQLite re-prepares a statement whose
/// LIMIT is a bound parameter on every execution (it may change the plan), which cost more
/// than the claim itself. One cached statement per limit value (a handful: the free worker
/// slots).
///
/// The destinations are walked with a loose index scan (one index seek per destination
/// with work, whatever the backlog behind each head), so a claim costs
/// O(active destinations x log n), not O(backlog).
const CLAIMABLE_HEADS: &str = concat!(
    heads_cte!(),
    "
SELECT d.id, d.dest_id FROM heads JOIN deliveries AS d ON d.id = heads.id
WHERE d.status = 'pending'
   OR (d.status = 'retrying' AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?1))
ORDER BY d.id
LIMIT "
);

/// The non-terminal deliveries of one destination from a head on, in id order, with what
/// decides whether a run may take them: status, due time, and the record's identity.
const RUN_FROM_HEAD: &str = "SELECT d.id, d.status, d.next_attempt_at, r.stream, r.record_key \
     FROM deliveries AS d INDEXED BY deliveries_head JOIN records AS r ON r.id = d.record_id \
     WHERE d.dest_id = ?1 AND d.status NOT IN ('delivered', 'failed') AND d.id >= ?2 \
     ORDER BY d.id";

/// Claims runs of consecutive due deliveries per destination (see
/// `AuditWrite::claim_runs`) in ONE `BEGIN IMMEDIATE` transaction. The records come back
/// as JSON, for [`decode_runs`] after the write lock is released.
pub(crate) fn claim_runs(
    conn: &mut Connection,
    by: &Claimant,
    now: Timestamp,
    limit: usize,
    lengths: &RunLengths,
) -> StoreResult<Vec<Vec<RawClaim>>> {
    let now_ns = codec::ts(now)?;
    let lease_ns = codec::ts(by.lease_until(now))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = format!("{CLAIMABLE_HEADS}{}", sql_limit(Some(limit)));
    let heads = tx
        .prepare_cached(&sql)?
        .query_map(params![now_ns], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(heads.len());
    let mut ids = Vec::new();
    for (head, dest_id) in heads {
        let destination = tx
            .prepare_cached("SELECT sink, address FROM destinations WHERE id = ?1")?
            .query_row([dest_id], |r| {
                Ok(Destination {
                    sink: r.get(0)?,
                    address: r.get(1)?,
                })
            })?;
        ids.clear();
        run_ids(
            &tx,
            head,
            dest_id,
            lengths.get(&destination),
            now_ns,
            &mut ids,
        )?;
        let run = claim_run(&tx, &ids, dest_id, &destination, by, now_ns, lease_ns)?;
        if !run.is_empty() {
            out.push(run);
        }
    }
    tx.commit()?;
    Ok(out)
}

/// The ids of the run that starts at `head`: up to `max` consecutive deliveries of the
/// destination, stopping at the first one not due (in flight, or retrying later) and
/// before a later version of a record already in the run (it threads on the first one's
/// receipt, known only once that one is delivered).
fn run_ids(
    tx: &Connection,
    head: i64,
    dest_id: i64,
    max: usize,
    now_ns: i64,
    ids: &mut Vec<i64>,
) -> StoreResult<()> {
    ids.push(head);
    if max <= 1 {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(RUN_FROM_HEAD)?;
    let mut rows = stmt.query(params![dest_id, head])?;
    let mut records: HashSet<(String, String)> = HashSet::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let identity: (String, String) = (row.get(3)?, row.get(4)?);
        if id == head {
            records.insert(identity);
            continue;
        }
        if ids.len() >= max {
            break;
        }
        let status = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
        let due = match status {
            "pending" => true,
            "retrying" => row.get::<_, Option<i64>>(2)?.is_none_or(|t| t <= now_ns),
            _ => false,
        };
        if !due || !records.insert(identity) {
            break;
        }
        ids.push(id);
    }
    Ok(())
}

/// The claimed run of a destination between two ids, with what sending needs: the record
/// and the delivery a later version threads on (the first delivered one for the same
/// stream, record key and destination).
const CLAIMED_RUN: &str = "SELECT d.id, d.record_id, d.attempts, d.in_doubt, d.created_at, \
       d.first_attempt_at, d.attempts - d.round_base, r.stream, r.body, \
       (SELECT t.id FROM records AS tr JOIN deliveries AS t ON t.record_id = tr.id \
        WHERE tr.stream = r.stream AND tr.record_key = r.record_key AND t.dest_id = d.dest_id \
          AND t.id < d.id AND t.remote_id IS NOT NULL \
        ORDER BY t.id LIMIT 1) \
     FROM deliveries AS d INDEXED BY deliveries_head JOIN records AS r ON r.id = d.record_id \
     WHERE d.dest_id = ?1 AND d.status NOT IN ('delivered', 'failed') AND d.id BETWEEN ?2 AND ?3 \
       AND d.status = 'in_flight' AND d.claimed_by = ?4 AND d.updated_at = ?5 \
     ORDER BY d.id";

/// A claimed delivery whose record is still JSON: decoded after the write lock is given
/// back ([`decode_runs`]), so decoding overlaps the next commit.
pub(crate) struct RawClaim {
    id: i64,
    record_id: i64,
    attempts: i64,
    round_attempt: i64,
    in_doubt: bool,
    created_at: i64,
    first_attempt_at: i64,
    stream: String,
    destination: Destination,
    body: Body,
    thread: Option<Receipt>,
}

/// A claimed delivery whose journaled record cannot be decoded: quarantined by
/// [`quarantine_claims`].
pub(crate) struct CorruptClaim {
    record_id: i64,
    id: i64,
    attempt: i64,
    cause: StoreError,
}

/// Marks the run `ids` (consecutive live deliveries of one destination, each due, as
/// [`run_ids`] found them) in flight for `by`, opens their attempts, and reads what sending
/// needs: a few statements per run, not per delivery.
fn claim_run(
    tx: &Connection,
    ids: &[i64],
    dest_id: i64,
    destination: &Destination,
    by: &Claimant,
    now_ns: i64,
    lease_ns: i64,
) -> StoreResult<Vec<RawClaim>> {
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        return Ok(Vec::new());
    };
    let owner = by.owner.as_str();
    // Every live delivery of the destination between `first` and `last` is in the run.
    tx.prepare_cached(
        "UPDATE deliveries SET status = 'in_flight', attempts = attempts + 1, \
           updated_at = ?4, next_attempt_at = NULL, \
           first_attempt_at = coalesce(first_attempt_at, ?4), \
           claimed_by = ?5, lease_until = ?6 \
         WHERE dest_id = ?1 AND status NOT IN ('delivered', 'failed') \
           AND id BETWEEN ?2 AND ?3 AND status IN ('pending', 'retrying')",
    )?
    .execute(params![dest_id, first, last, now_ns, owner, lease_ns])?;
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at) \
         SELECT id, attempts, ?4 FROM deliveries INDEXED BY deliveries_head \
         WHERE dest_id = ?1 AND status NOT IN ('delivered', 'failed') \
           AND id BETWEEN ?2 AND ?3 AND status = 'in_flight' AND claimed_by = ?5 \
           AND updated_at = ?4",
    )?
    .execute(params![dest_id, first, last, now_ns, owner])?;
    let mut out = Vec::with_capacity(ids.len());
    let mut threads = Vec::new();
    {
        let mut stmt = tx.prepare_cached(CLAIMED_RUN)?;
        let mut rows = stmt.query(params![dest_id, first, last, owner, now_ns])?;
        while let Some(row) = rows.next()? {
            if let Some(t) = row.get::<_, Option<i64>>(9)? {
                threads.push((out.len(), t));
            }
            out.push(RawClaim {
                id: row.get(0)?,
                record_id: row.get(1)?,
                attempts: row.get(2)?,
                in_doubt: row.get(3)?,
                created_at: row.get(4)?,
                first_attempt_at: row.get(5)?,
                round_attempt: row.get(6)?,
                stream: row.get(7)?,
                body: row.get(8)?,
                destination: destination.clone(),
                thread: None,
            });
        }
    }
    for (i, t) in threads {
        out[i].thread = Some(
            tx.prepare_cached("SELECT remote_id, remote_scope FROM deliveries WHERE id = ?1")?
                .query_row([t], |r| {
                    Ok(Receipt {
                        remote_id: r.get(0)?,
                        remote_scope: r.get(1)?,
                        status: None,
                    })
                })?,
        );
    }
    Ok(out)
}

/// Decodes claimed runs (outside the write lock). Deliveries whose record cannot be
/// decoded are left out of their run and returned for [`quarantine_claims`].
pub(crate) fn decode_runs(
    runs: Vec<Vec<RawClaim>>,
    recent: &Recent,
) -> StoreResult<(Vec<Vec<ClaimedDelivery>>, Vec<CorruptClaim>)> {
    let mut out = Vec::with_capacity(runs.len());
    let mut corrupt = Vec::new();
    for run in runs {
        let mut decoded = Vec::with_capacity(run.len());
        for c in run {
            let decoded_now = || c.body.decode(&format!("record {}", c.record_id));
            let record: Record = match recent
                .get(c.record_id, &c.body)
                .map_or_else(decoded_now, Ok)
            {
                Ok(r) => r,
                Err(cause) => {
                    corrupt.push(CorruptClaim {
                        record_id: c.record_id,
                        id: c.id,
                        attempt: c.attempts,
                        cause,
                    });
                    continue;
                }
            };
            let what = format!("delivery {}", c.id);
            decoded.push(ClaimedDelivery {
                id: DeliveryId(c.id),
                stream: c.stream,
                destination: c.destination,
                record,
                attempt: codec::count_u32(c.attempts, &what)?,
                round_attempt: codec::count_u32(c.round_attempt, &what)?,
                in_doubt: c.in_doubt,
                thread: c.thread,
                created_at: codec::ts_from(c.created_at, &what)?,
                first_attempt_at: codec::ts_from(c.first_attempt_at, &what)?,
            });
        }
        if !decoded.is_empty() {
            out.push(decoded);
        }
    }
    Ok((out, corrupt))
}

/// Quarantines claimed deliveries whose record cannot be decoded, in one transaction.
pub(crate) fn quarantine_claims(
    conn: &mut Connection,
    corrupt: &[CorruptClaim],
    now: Timestamp,
) -> StoreResult<()> {
    let now_ns = codec::ts(now)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for c in corrupt {
        quarantine(&tx, c.record_id, c.id, c.attempt, now_ns, &c.cause)?;
    }
    tx.commit()?;
    Ok(())
}

/// A record row that cannot be decoded must not stop every delivery (DESIGN invariant 4
/// holds for the journal too): its claimed delivery and its other waiting deliveries are
/// failed with the reason, visible in `audit`, and the claim goes on. Deliveries of the
/// record in flight elsewhere are left to their owner.
fn quarantine(
    tx: &Connection,
    record_id: i64,
    id: i64,
    attempt: i64,
    now_ns: i64,
    cause: &StoreError,
) -> StoreResult<()> {
    let error = ErrorInfo {
        class: "permanent".into(),
        code: Some("journal_corrupt".into()),
        message: format!("quarantined: the journaled record cannot be read: {cause}"),
    };
    let json = codec::to_json(&error)?;
    tx.prepare_cached(
        "UPDATE attempts SET finished_at = ?3, outcome = 'failed', error = ?4 \
         WHERE delivery_id = ?1 AND number = ?2",
    )?
    .execute(params![id, attempt, now_ns, json])?;
    let n = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'failed', last_error = ?3, updated_at = ?4, \
               next_attempt_at = NULL \
             WHERE record_id = ?1 AND (id = ?2 OR status IN ('pending', 'retrying'))",
        )?
        .execute(params![record_id, id, json, now_ns])?;
    tracing::error!(record = record_id, deliveries = n, error = %cause, "corrupt journal record quarantined");
    metrics::counter!("ml_journal_quarantined_total").increment(n as u64);
    Ok(())
}

/// The status and attempt count of a delivery, or `NotFound`.
fn current(conn: &Connection, id: DeliveryId) -> StoreResult<(DeliveryStatus, i64)> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT status, attempts FROM deliveries WHERE id = ?1")?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (status, attempts) = row.ok_or_else(|| Error::NotFound(format!("delivery {id}")))?;
    Ok((codec::status(&status, &format!("delivery {id}"))?, attempts))
}

pub(crate) fn finish_attempt(
    conn: &mut Connection,
    id: DeliveryId,
    outcome: &AttemptOutcome,
    at: Timestamp,
) -> StoreResult<()> {
    let at_ns = codec::ts(at)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    finish_in(&tx, id, outcome, at_ns)?;
    tx.commit()?;
    Ok(())
}

/// Records several outcomes in ONE `BEGIN IMMEDIATE` transaction (a group commit). An
/// attempt that is not in flight (or unknown) is skipped; the first such refusal is
/// returned after the others are committed.
pub(crate) fn finish_attempts(conn: &mut Connection, done: &[FinishedAttempt]) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut refused = None;
    for f in done {
        match finish_in(&tx, f.id, &f.outcome, codec::ts(f.at)?) {
            Ok(()) => {}
            Err(StoreError::Core(e @ (Error::InvalidState(_) | Error::NotFound(_)))) => {
                refused.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit()?;
    refused.map_or(Ok(()), |e| Err(e.into()))
}

fn finish_in(
    tx: &Connection,
    id: DeliveryId,
    outcome: &AttemptOutcome,
    at_ns: i64,
) -> StoreResult<()> {
    let (remote_id, error): (Option<&str>, Option<&ErrorInfo>) = match outcome {
        AttemptOutcome::Delivered { receipt, .. } | AttemptOutcome::Reconciled(receipt) => {
            (Some(&receipt.remote_id), None)
        }
        AttemptOutcome::Retry { error, .. } | AttemptOutcome::Failed(error) => (None, Some(error)),
    };
    // The attempt first: while in flight, its number is the delivery's attempt count.
    let closed = tx
        .prepare_cached(
            "UPDATE attempts SET finished_at = ?2, outcome = ?3, remote_id = ?4, error = ?5 \
             WHERE delivery_id = ?1 AND number = \
               (SELECT attempts FROM deliveries WHERE id = ?1 AND status = 'in_flight')",
        )?
        .execute(params![
            id.0,
            at_ns,
            outcome.label(),
            remote_id,
            codec::to_json_opt(error)?,
        ])?;
    if closed == 0 {
        not_in_flight(tx, id)?;
        // In flight without an open attempt row: the delivery still moves on.
    }
    let changed = match outcome {
        AttemptOutcome::Delivered {
            receipt,
            after_doubt,
        } => delivered(tx, id, receipt, *after_doubt, at_ns)?,
        AttemptOutcome::Reconciled(receipt) => delivered(tx, id, receipt, false, at_ns)?,
        AttemptOutcome::Retry {
            error,
            next_at,
            in_doubt,
        } => tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'retrying', next_attempt_at = ?2, \
                   in_doubt = ?3, last_error = ?4, updated_at = ?5, \
                   claimed_by = NULL, lease_until = NULL \
                 WHERE id = ?1 AND status = 'in_flight'",
            )?
            .execute(params![
                id.0,
                codec::ts(*next_at)?,
                in_doubt,
                codec::to_json(error)?,
                at_ns
            ])?,
        AttemptOutcome::Failed(error) => tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'failed', last_error = ?2, updated_at = ?3, \
                   claimed_by = NULL, lease_until = NULL \
                 WHERE id = ?1 AND status = 'in_flight'",
            )?
            .execute(params![id.0, codec::to_json(error)?, at_ns])?,
    };
    if changed == 0 {
        not_in_flight(tx, id)?;
    }
    Ok(())
}

/// `NotFound` for an unknown delivery, `InvalidState` for one that is not in flight.
fn not_in_flight(tx: &Connection, id: DeliveryId) -> StoreResult<()> {
    let (status, _) = current(tx, id)?;
    if status == DeliveryStatus::InFlight {
        return Ok(());
    }
    Err(Error::InvalidState(format!("delivery {id} is {status}, not in flight")).into())
}

/// Gives back `by`'s unsent claims among `ids`: the claim is undone (attempt removed,
/// pending again when it was, due now), in one transaction.
pub(crate) fn release_claims(
    conn: &mut Connection,
    by: &Claimant,
    ids: &[DeliveryId],
    now: Timestamp,
) -> StoreResult<u64> {
    let now = codec::ts(now)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut n = 0;
    for id in ids {
        tx.prepare_cached(
            "DELETE FROM attempts WHERE delivery_id = ?1 AND number = \
               (SELECT attempts FROM deliveries \
                WHERE id = ?1 AND status = 'in_flight' AND claimed_by = ?2)",
        )?
        .execute(params![id.0, by.owner.as_str()])?;
        // Right-hand sides see the row as it was: `attempts - 1` is the count before the
        // claim.
        n += tx
            .prepare_cached(
                "UPDATE deliveries SET attempts = attempts - 1, \
                   status = CASE WHEN attempts - 1 = round_base AND in_doubt = 0 \
                     THEN 'pending' ELSE 'retrying' END, \
                   first_attempt_at = CASE WHEN attempts - 1 = round_base \
                     THEN NULL ELSE first_attempt_at END, \
                   next_attempt_at = ?3, updated_at = ?3, claimed_by = NULL, lease_until = NULL \
                 WHERE id = ?1 AND status = 'in_flight' AND claimed_by = ?2",
            )?
            .execute(params![id.0, by.owner.as_str(), now])?;
    }
    tx.commit()?;
    Ok(n as u64)
}

/// Delivered with a receipt (?2 remote id, ?3 scope, ?4 after doubt, ?5 at). A new remote
/// message (a replay's) starts with no remote status and no error; the old message id is
/// replaced, so its late callbacks no longer match. A status a callback already reported
/// for this very message (it overtook the answer) is kept, and a failure it reported fails
/// the delivery with its error.
const DELIVERED: &str = "UPDATE deliveries SET \
       status = CASE WHEN remote_id IS ?2 AND remote_status IN ('undelivered', 'failed') \
         THEN 'failed' ELSE 'delivered' END, \
       in_doubt = 0, \
       remote_status = CASE WHEN remote_id IS ?2 THEN remote_status ELSE NULL END, \
       last_error = CASE WHEN remote_id IS ?2 AND remote_status IN ('undelivered', 'failed') \
         THEN last_error ELSE NULL END, \
       remote_id = ?2, remote_scope = ?3, next_attempt_at = NULL, \
       resent_after_doubt = resent_after_doubt + ?4, updated_at = ?5, \
       claimed_by = NULL, lease_until = NULL \
     WHERE id = ?1 AND status = 'in_flight'";

fn delivered(
    conn: &Connection,
    id: DeliveryId,
    receipt: &Receipt,
    after_doubt: bool,
    at: i64,
) -> StoreResult<usize> {
    Ok(conn.prepare_cached(DELIVERED)?.execute(params![
        id.0,
        receipt.remote_id,
        receipt.remote_scope,
        i64::from(after_doubt),
        at
    ])?)
}

/// In flight and takeable by `owner`: its own, or a lease that ran out (or none: rows of a
/// version-1 journal).
const TAKEABLE: &str = "status = 'in_flight' AND (claimed_by IS NULL OR claimed_by = ?2 \
                        OR lease_until IS NULL OR lease_until <= ?1)";

pub(crate) fn requeue_in_flight(
    conn: &mut Connection,
    by: &Claimant,
    now: Timestamp,
) -> StoreResult<u64> {
    let now = codec::ts(now)?;
    let owner = by.owner.as_str();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The open attempt of an in-flight delivery is its last one: number = attempts.
    tx.prepare_cached(&format!(
        "UPDATE attempts SET finished_at = ?1, outcome = 'interrupted' \
         WHERE (delivery_id, number) IN \
           (SELECT id, attempts FROM deliveries WHERE {TAKEABLE})"
    ))?
    .execute(params![now, owner])?;
    // Their sends may have arrived at any moment up to now.
    tx.prepare_cached(&format!(
        "UPDATE destinations SET last_send_end = max(coalesce(last_send_end, ?1), ?1) \
         WHERE id IN (SELECT dest_id FROM deliveries WHERE {TAKEABLE})"
    ))?
    .execute(params![now, owner])?;
    let n = tx
        .prepare_cached(&format!(
            "UPDATE deliveries SET status = 'retrying', in_doubt = 1, next_attempt_at = ?1, \
               updated_at = ?1, claimed_by = NULL, lease_until = NULL \
             WHERE {TAKEABLE}"
        ))?
        .execute(params![now, owner])?;
    tx.commit()?;
    Ok(n as u64)
}

/// Keeps the latest send end per destination, in one transaction.
pub(crate) fn record_send_ends(
    conn: &mut Connection,
    ends: &[(Destination, Timestamp)],
) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO destinations (sink, address, last_send_end) VALUES (?1, ?2, ?3) \
             ON CONFLICT (sink, address) DO UPDATE SET last_send_end = \
               max(coalesce(last_send_end, excluded.last_send_end), excluded.last_send_end)",
        )?;
        for (d, at) in ml_core::audit::latest_send_ends(ends) {
            stmt.execute(params![d.sink, d.address, codec::ts(at)?])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn renew_claims(
    conn: &mut Connection,
    by: &Claimant,
    ids: &[DeliveryId],
    now: Timestamp,
) -> StoreResult<u64> {
    let until = codec::ts(by.lease_until(now))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut n = 0;
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE deliveries SET lease_until = ?3 \
             WHERE id = ?1 AND status = 'in_flight' AND claimed_by = ?2",
        )?;
        for id in ids {
            n += stmt.execute(params![id.0, by.owner.as_str(), until])?;
        }
    }
    tx.commit()?;
    Ok(n as u64)
}

pub(crate) fn acquire_stream(
    conn: &mut Connection,
    stream: &str,
    by: &Claimant,
    now: Timestamp,
) -> StoreResult<bool> {
    let now_ns = codec::ts(now)?;
    let until = codec::ts(by.lease_until(now))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx
        .prepare_cached(
            "INSERT INTO stream_leases (stream, owner, lease_until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (stream) DO UPDATE SET owner = excluded.owner, \
               lease_until = excluded.lease_until \
             WHERE stream_leases.owner = excluded.owner OR stream_leases.lease_until <= ?4",
        )?
        .execute(params![stream, by.owner.as_str(), until, now_ns])?;
    tx.commit()?;
    Ok(n > 0)
}

pub(crate) fn release_stream(
    conn: &mut Connection,
    stream: &str,
    by: &Claimant,
) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM stream_leases WHERE stream = ?1 AND owner = ?2")?
        .execute(params![stream, by.owner.as_str()])?;
    Ok(())
}

// A replay starts a new retry round: a fresh budget of attempts and time.
const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', next_attempt_at = ?1, \
                       updated_at = ?1, round_base = attempts, first_attempt_at = NULL \
                       WHERE id = ?2";

/// See `AuditWrite::rename_stream`.
pub(crate) fn rename_stream(conn: &mut Connection, from: &str, to: &str) -> StoreResult<bool> {
    const NAMED: &str = "SELECT EXISTS (SELECT 1 FROM positions WHERE stream = ?1) \
           OR EXISTS (SELECT 1 FROM records WHERE stream = ?1) \
           OR EXISTS (SELECT 1 FROM rejected WHERE stream = ?1)";
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let named = |s: &str| -> StoreResult<bool> {
        Ok(tx.query_row(NAMED, params![s], |r| r.get::<_, bool>(0))?)
    };
    if named(to)? {
        return Err(Error::InvalidState(format!(
            "cannot rename stream `{from}` to `{to}`: the journal already has a stream `{to}`"
        ))
        .into());
    }
    if !named(from)? {
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
            &format!("UPDATE {table} SET stream = ?2 WHERE stream = ?1"),
            params![from, to],
        )?;
    }
    tx.execute("DELETE FROM stream_leases WHERE stream = ?1", params![from])?;
    tx.commit()?;
    Ok(true)
}

/// See `AuditWrite::retry_held_now`: a hold is the only retry of a permanent error.
pub(crate) fn retry_held_now(conn: &mut Connection, now: Timestamp) -> StoreResult<u64> {
    let now = codec::ts(now)?;
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?1 \
             WHERE status = 'retrying' AND next_attempt_at > ?1 \
               AND json_extract(last_error, '$.class') = 'permanent'",
        )?
        .execute(params![now])?;
    Ok(n as u64)
}

pub(crate) fn replay(conn: &mut Connection, id: DeliveryId, now: Timestamp) -> StoreResult<()> {
    let now = codec::ts(now)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (status, _) = current(&tx, id)?;
    if status != DeliveryStatus::Failed {
        return Err(Error::InvalidState(format!(
            "delivery {id} is {status}; only failed deliveries can be replayed"
        ))
        .into());
    }
    tx.prepare_cached(REQUEUE)?.execute(params![now, id.0])?;
    tx.commit()?;
    Ok(())
}

/// See `AuditWrite::replay_failed` and, with `to`, `AuditWrite::replay_failed_to`.
pub(crate) fn replay_failed(
    conn: &mut Connection,
    filter: &DeliveryFilter,
    to: Option<&Destination>,
    now: Timestamp,
) -> StoreResult<u64> {
    let now = codec::ts(now)?;
    let (clause, mut args) = filter_clause(filter);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let dest: Option<i64> = match to {
        Some(to) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO destinations (sink, address) VALUES (?1, ?2)",
            )?
            .execute(params![to.sink, to.address])?;
            Some(
                tx.prepare_cached("SELECT id FROM destinations WHERE sink = ?1 AND address = ?2")?
                    .query_row(params![to.sink, to.address], |r| r.get(0))?,
            )
        }
        None => None,
    };
    // ?1: the new destination (NULL: the same one); a record that already has a live or
    // sent delivery there keeps its failed one.
    let sql = format!(
        "UPDATE deliveries SET status = 'pending', dest_id = coalesce(?1, dest_id), \
           remote_scope = CASE WHEN ?1 IS NULL THEN remote_scope END, \
           next_attempt_at = ?2, updated_at = ?2, round_base = attempts, first_attempt_at = NULL \
         WHERE id IN (SELECT d.id FROM deliveries AS d JOIN records AS r ON r.id = d.record_id \
                      WHERE d.status = 'failed'{clause} \
                        AND (?1 IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS t \
                          WHERE t.record_id = d.record_id AND t.dest_id = ?1 \
                            AND t.status <> 'failed')) \
                      ORDER BY d.id LIMIT ?)"
    );
    let mut all = vec![dest.into(), now.into()];
    all.append(&mut args);
    all.push(sql_limit(filter.limit).into());
    let n = tx.prepare_cached(&sql)?.execute(params_from_iter(all))?;
    tx.commit()?;
    Ok(n as u64)
}

/// A callback that overtook the answer to its send, kept on the in-flight delivery it
/// names; [`DELIVERED`] keeps it when the send's receipt has the same remote id.
const EARLY_CALLBACK: &str = "UPDATE deliveries SET remote_id = ?2, remote_status = ?3, \
       last_error = coalesce(?4, last_error), updated_at = max(updated_at, ?5) \
     WHERE id = ?1 AND status = 'in_flight'";

pub(crate) fn apply_callback(
    conn: &mut Connection,
    update: &CallbackUpdate,
) -> StoreResult<CallbackApplied> {
    let at = codec::ts(update.at)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Remote ids are unique in practice; should two deliveries share one, the newest
    // delivery (highest id) gets the callback.
    let row: Option<(i64, String, Option<String>, i64)> = tx
        .prepare_cached(
            "SELECT id, status, remote_status, updated_at FROM deliveries \
             WHERE remote_id = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([&update.remote_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((id, status, remote, updated_at)) = row else {
        let Some(named) = update.delivery else {
            return Ok(CallbackApplied::UnknownRemoteId);
        };
        // Ahead of its send's answer: kept on the delivery while it is in flight.
        let error = update
            .status
            .is_failure()
            .then(|| codec::to_json(&update.failure_info()))
            .transpose()?;
        let n = tx.prepare_cached(EARLY_CALLBACK)?.execute(params![
            named.0,
            update.remote_id,
            update.status.as_str(),
            error,
            at
        ])?;
        tx.commit()?;
        return Ok(if n == 1 {
            CallbackApplied::Applied(named)
        } else {
            CallbackApplied::UnknownRemoteId
        });
    };
    let what = format!("delivery {id}");
    let status = codec::status(&status, &what)?;
    let remote = codec::remote_status(remote.as_deref(), &what)?;
    if remote.is_some_and(|cur| !update.status.supersedes(cur)) {
        return Ok(CallbackApplied::Stale(DeliveryId(id)));
    }
    let fails = update.status.is_failure() && status == DeliveryStatus::Delivered;
    let (new_status, error) = if fails {
        (
            DeliveryStatus::Failed,
            Some(codec::to_json(&update.failure_info())?),
        )
    } else {
        (status, None)
    };
    tx.prepare_cached(
        "UPDATE deliveries SET remote_status = ?2, updated_at = ?3, status = ?4, \
           last_error = coalesce(?5, last_error) \
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        update.status.as_str(),
        updated_at.max(at),
        new_status.as_str(),
        error
    ])?;
    tx.commit()?;
    Ok(CallbackApplied::Applied(DeliveryId(id)))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::CLAIMABLE_HEADS;

    /// The query plan's lines.
    pub(crate) fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let n = stmt.parameter_count();
        let args: Vec<i64> = vec![0; n];
        stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    pub(crate) fn journal() -> Connection {
        let mut c = Connection::open_in_memory().expect("open");
        crate::schema::migrate(&mut c, ":memory:").expect("migrate");
        c
    }

    #[test]
    fn claims_walk_the_head_index_without_scanning_deliveries() {
        let c = journal();
        let p = plan(&c, &format!("{CLAIMABLE_HEADS}16"));
        // The only scans: the CTE, and the first entry of the head index.
        assert!(
            p.iter()
                .filter(|l| l.starts_with("SCAN "))
                .all(|l| l == "SCAN dests"
                    || l == "SCAN CONSTANT ROW"
                    || l.ends_with("USING INDEX deliveries_head")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("USING INDEX deliveries_head (dest_id>?)")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("USING INDEX deliveries_head (dest_id=?)")),
            "{p:#?}"
        );
    }

    #[test]
    fn hot_queries_use_indexes() {
        let c = journal();
        for sql in [
            "SELECT d.remote_id, d.remote_scope \
             FROM records AS r JOIN deliveries AS d ON d.record_id = r.id \
             WHERE r.stream = ?1 AND r.record_key = ?2 AND d.dest_id = ?3 AND d.id < ?4 \
               AND d.remote_id IS NOT NULL ORDER BY d.id LIMIT 1",
            "SELECT id, status, remote_status, updated_at FROM deliveries \
             WHERE remote_id = ?1 ORDER BY id DESC LIMIT 1",
            "SELECT min(t) FROM ( \
               SELECT min(next_attempt_at) AS t FROM deliveries WHERE status = 'pending' \
               UNION ALL \
               SELECT min(next_attempt_at) FROM deliveries WHERE status = 'retrying')",
            "UPDATE deliveries SET status = 'retrying' WHERE status = 'in_flight' \
               AND (claimed_by IS NULL OR claimed_by = ?2 OR lease_until IS NULL \
                    OR lease_until <= ?1)",
            "SELECT id FROM records WHERE stream = ?1 AND record_key = ?2 ORDER BY id",
            "SELECT id FROM rejected WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
            "SELECT id FROM cycles WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
        ] {
            let p = plan(&c, sql);
            assert!(p.iter().all(|l| !l.starts_with("SCAN ")), "{sql}: {p:#?}");
        }
    }
}
