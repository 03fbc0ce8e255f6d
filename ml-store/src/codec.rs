//! Conversions between the journal's columns and ml-core's types: timestamps as integer
//! nanoseconds, JSON columns, statuses, and the delivery row.

use std::str::FromStr;

use jiff::Timestamp;
use ml_core::Destination;
use ml_core::audit::{DeliveryId, DeliveryStatus, DeliveryView, ErrorInfo, RemoteStatus};
use rusqlite::Row;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{StoreError, StoreResult};

/// A timestamp as stored: nanoseconds since the Unix epoch.
pub(crate) fn ts(t: Timestamp) -> StoreResult<i64> {
    i64::try_from(t.as_nanosecond()).map_err(|_| StoreError::TimestampOutOfRange(t))
}

/// An optional timestamp as stored.
pub(crate) fn ts_opt(t: Option<Timestamp>) -> StoreResult<Option<i64>> {
    t.map(ts).transpose()
}

/// A timestamp bound for a query: clamped to the stored range, which keeps comparisons with
/// stored values exact.
pub(crate) fn ts_bound(t: Timestamp) -> i64 {
    let ns = t.as_nanosecond();
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

/// A stored timestamp.
pub(crate) fn ts_from(ns: i64, what: &str) -> StoreResult<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns))
        .map_err(|e| StoreError::corrupt(format!("{what}: invalid timestamp {ns}: {e}")))
}

/// An optional stored timestamp.
pub(crate) fn ts_from_opt(ns: Option<i64>, what: &str) -> StoreResult<Option<Timestamp>> {
    ns.map(|n| ts_from(n, what)).transpose()
}

/// A value as JSON text.
pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| {
        StoreError::Core(ml_core::Error::store(
            ml_core::ErrorClass::Permanent,
            format!("cannot encode a journal value as JSON: {e}"),
            Some(Box::new(e)),
        ))
    })
}

/// An optional value as JSON text.
pub(crate) fn to_json_opt<T: Serialize>(v: Option<&T>) -> StoreResult<Option<String>> {
    v.map(to_json).transpose()
}

/// A JSON column.
pub(crate) fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt(format!("{what}: invalid JSON: {e}")))
}

/// An optional JSON column.
pub(crate) fn from_json_opt<T: DeserializeOwned>(
    s: Option<&str>,
    what: &str,
) -> StoreResult<Option<T>> {
    s.map(|s| from_json(s, what)).transpose()
}

/// A status column.
pub(crate) fn status(s: &str, what: &str) -> StoreResult<DeliveryStatus> {
    DeliveryStatus::from_str(s).map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

/// A remote status column.
pub(crate) fn remote_status(s: Option<&str>, what: &str) -> StoreResult<Option<RemoteStatus>> {
    s.map(|s| RemoteStatus::from_str(s).map_err(|e| StoreError::corrupt(format!("{what}: {e}"))))
        .transpose()
}

/// A counter column (never negative).
pub(crate) fn count_u32(n: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| StoreError::corrupt(format!("{what}: invalid count {n}")))
}

/// A counter column (never negative).
pub(crate) fn count_u64(n: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(format!("{what}: invalid count {n}")))
}

/// A count or limit as an SQL integer.
pub(crate) fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `LIMIT` value (`-1`: no limit).
pub(crate) fn sql_limit(n: Option<usize>) -> i64 {
    n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// The columns [`delivery`] decodes, from [`DELIVERY_JOIN`].
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, r.stream, r.record_key, r.dedupe_version, \
     dst.sink, dst.address, d.status, d.attempts, d.in_doubt, d.resent_after_doubt, \
     d.remote_id, d.remote_status, d.last_error, d.created_at, d.updated_at, \
     d.next_attempt_at, d.remote_scope";

/// A delivery with its record (`r`) and destination (`dst`).
pub(crate) const DELIVERY_JOIN: &str = "deliveries AS d \
     JOIN records AS r ON r.id = d.record_id \
     JOIN destinations AS dst ON dst.id = d.dest_id";

/// A delivery row selected with [`DELIVERY_COLUMNS`].
pub(crate) fn delivery(row: &Row<'_>) -> StoreResult<DeliveryView> {
    let id: i64 = row.get(0)?;
    let what = format!("delivery {id}");
    let what = what.as_str();
    Ok(DeliveryView {
        id: DeliveryId(id),
        stream: row.get(1)?,
        record_key: row.get(2)?,
        record_version: row.get(3)?,
        destination: Destination {
            sink: row.get(4)?,
            address: row.get(5)?,
        },
        status: status(&row.get::<_, String>(6)?, what)?,
        attempts: count_u32(row.get(7)?, what)?,
        in_doubt: row.get(8)?,
        resent_after_doubt: count_u32(row.get(9)?, what)?,
        remote_id: row.get(10)?,
        remote_status: remote_status(row.get::<_, Option<String>>(11)?.as_deref(), what)?,
        last_error: from_json_opt::<ErrorInfo>(row.get::<_, Option<String>>(12)?.as_deref(), what)?,
        created_at: ts_from(row.get(13)?, what)?,
        updated_at: ts_from(row.get(14)?, what)?,
        next_attempt_at: ts_from_opt(row.get(15)?, what)?,
        remote_scope: row.get(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_exactly_and_bounds_clamp() {
        let t: Timestamp = "2026-03-04T05:06:07.123456789Z".parse().expect("ts");
        assert_eq!(ts_from(ts(t).expect("in range"), "t").expect("back"), t);
        assert!(matches!(
            ts(Timestamp::MAX),
            Err(StoreError::TimestampOutOfRange(_))
        ));
        assert_eq!(ts_bound(Timestamp::MAX), i64::MAX);
        assert_eq!(ts_bound(Timestamp::MIN), i64::MIN);
        assert!(ts(Timestamp::UNIX_EPOCH).expect("epoch") == 0);
    }

    #[test]
    fn bad_columns_are_corrupt_rows() {
        assert!(matches!(
            status("bogus", "delivery 1"),
            Err(StoreError::CorruptRow { .. })
        ));
        assert!(matches!(
            from_json::<ErrorInfo>("{", "x"),
            Err(StoreError::CorruptRow { .. })
        ));
        assert!(matches!(
            count_u32(-1, "x"),
            Err(StoreError::CorruptRow { .. })
        ));
    }
}
