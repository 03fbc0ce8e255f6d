//! Ordered pages out of an unordered `SELECT`: `RFC_READ_TABLE` has no `ORDER BY` and
//! `ROWSKIPS` pages have no stable order, so pages are *complete key ranges*.
//!
//! A page of `limit` rows after the cursor's lower bound is found by probing the narrow
//! (stamp, key) columns with `ROWCOUNT = cap + 1`: an answer of at most `cap` rows is the
//! whole range, sorted here; a full answer is a subset whose `limit`-th smallest row bounds
//! the first `limit` rows of the range from above, so the probe repeats below that bound
//! (each repeat strictly lowers it). The page's rows are then read in full between its
//! first and last (stamp, key), a range known to hold them all. Continuation is by key
//! range (`CPUDT > d OR ( CPUDT = d AND ( CPUTM > t OR ... BELNR > 'k' ) )`), never
//! `ROWSKIPS`.
//!
//! SAP dates and times are application-server local, without a zone. The cursor runs on
//! those wall-clock values read as if they were UTC ("naive" instants, monotone in the
//! server's own order even across a DST change); records carry the real instant, converted
//! with `SAP_ECC_TIMEZONE`.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use ml_core::cursor::ReadPlan;

use crate::error::SapEccError;
use crate::options::Expr;
use crate::read_table::{ReadRequest, RfcReadTable};
use crate::rfc::RfcRow;

/// What one incremental stream reads.
#[derive(Clone, Debug)]
pub struct ScanSpec {
    /// The table.
    pub table: &'static str,
    /// The date column of the stamp (`CPUDT`, `UDATE`, `AEDAT`).
    pub date: &'static str,
    /// The time column of the stamp (`CPUTM`, `UTIME`), if there is one.
    pub time: Option<&'static str>,
    /// The key columns, in the order rows are sorted within a stamp.
    pub key: &'static [&'static str],
    /// Every field read for a record.
    pub fields: Vec<&'static str>,
    /// A fixed restriction (`OBJECTCLAS = 'EINKBELEG'`, company codes).
    pub base: Expr,
}

impl ScanSpec {
    fn stamp_fields(&self) -> Vec<&'static str> {
        let mut v = vec![self.date];
        v.extend(self.time);
        v
    }

    fn order_fields(&self) -> Vec<&'static str> {
        let mut v = self.stamp_fields();
        v.extend_from_slice(self.key);
        v
    }

    fn stamp_values(&self, t: Timestamp) -> Vec<String> {
        let (d, tm) = to_sap(t);
        let mut v = vec![d];
        if self.time.is_some() {
            v.push(tm);
        }
        v
    }

    /// The sort key of a row: stamp columns then key columns.
    pub fn sort_key(&self, row: &RfcRow) -> Vec<String> {
        self.order_fields()
            .iter()
            .map(|f| row.get(*f).cloned().unwrap_or_default())
            .collect()
    }

    /// The cursor key of a row (key columns joined by `/`).
    pub fn cursor_key(&self, row: &RfcRow) -> String {
        self.key
            .iter()
            .map(|f| row.get(*f).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The naive instant of a row's stamp (see the module docs), if it parses.
    pub fn naive_stamp(&self, row: &RfcRow) -> Option<Timestamp> {
        let d = parse_date(row.get(self.date)?)?;
        let t = match self.time {
            Some(f) => parse_time(row.get(f)?)?,
            None => Time::midnight(),
        };
        Some(naive_ts(d.to_datetime(t)))
    }
}

/// `YYYYMMDD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i16 = s[..4].parse().ok()?;
    let m: i8 = s[4..6].parse().ok()?;
    let d: i8 = s[6..].parse().ok()?;
    Date::new(y, m, d).ok()
}

/// `HHMMSS`.
pub fn parse_time(s: &str) -> Option<Time> {
    let s = s.trim();
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Time::new(
        s[..2].parse().ok()?,
        s[2..4].parse().ok()?,
        s[4..].parse().ok()?,
        0,
    )
    .ok()
}

/// A wall-clock time read as UTC.
pub fn naive_ts(dt: DateTime) -> Timestamp {
    dt.to_zoned(TimeZone::UTC)
        .map_or(Timestamp::UNIX_EPOCH, |z| z.timestamp())
}

/// The SAP date and time of a naive instant.
pub fn to_sap(t: Timestamp) -> (String, String) {
    let dt = t.to_zoned(TimeZone::UTC).datetime();
    (
        dt.strftime("%Y%m%d").to_string(),
        dt.strftime("%H%M%S").to_string(),
    )
}

/// The naive instant of a real one in the server's zone (the cursor's `now`).
pub fn naive_now(now: Timestamp, tz: &TimeZone) -> Timestamp {
    naive_ts(now.to_zoned(tz.clone()).datetime())
}

/// The real instant of a server-local wall-clock time (an ambiguous or skipped time in a
/// DST change resolves to the earlier offset).
pub fn local_to_instant(naive: Timestamp, tz: &TimeZone) -> Timestamp {
    let dt = naive.to_zoned(TimeZone::UTC).datetime();
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .map_or(naive, |z| z.timestamp())
}

/// `SAP_ECC_TIMEZONE`: an IANA name (`Europe/Berlin`) or a fixed offset (`+02:00`,
/// `-0500`, `+5`, `UTC`).
pub fn parse_timezone(s: &str) -> Option<TimeZone> {
    let s = s.trim();
    if let Ok(tz) = TimeZone::get(s) {
        return Some(tz);
    }
    let body = s.strip_prefix("UTC").unwrap_or(s);
    let (sign, rest) = match body.as_bytes().first()? {
        b'+' => (1, &body[1..]),
        b'-' => (-1, &body[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().ok()?, 0)
    } else {
        let (h, m) = digits.split_at(digits.len() - 2);
        (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?)
    };
    if h > 14 || m > 59 {
        return None;
    }
    let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()?;
    Some(TimeZone::fixed(offset))
}

/// One page of a scan.
#[derive(Clone, Debug, Default)]
pub struct Scanned {
    /// The rows in (stamp, key) order, at most `limit`.
    pub rows: Vec<RfcRow>,
    /// Whether more rows follow.
    pub more: bool,
}

/// Reads the page `plan` asks for (see the module docs).
pub async fn scan(
    rt: &RfcReadTable,
    spec: &ScanSpec,
    plan: &ReadPlan,
    limit: usize,
    probe_cap: usize,
) -> Result<Scanned, SapEccError> {
    let order = spec.order_fields();
    let stamp = spec.stamp_fields();
    let lower = match (plan.since, &plan.after_key) {
        (Some(t), Some(k)) => {
            let mut values = spec.stamp_values(t);
            values.extend(k.split('/').map(str::to_owned));
            Expr::lex(&order, &values, true, true)
        }
        (Some(t), None) => Expr::lex(&stamp, &spec.stamp_values(t), true, false),
        (None, _) => Expr::True,
    };
    let within = if plan.within.is_empty() {
        Expr::True
    } else {
        Expr::or(plan.within.iter().map(|w| {
            Expr::and([
                Expr::lex(&stamp, &spec.stamp_values(w.lo), true, false),
                Expr::lex(&stamp, &spec.stamp_values(w.hi), false, false),
            ])
        }))
    };
    let offset = usize::try_from(plan.offset).unwrap_or(usize::MAX);
    let mut limit = limit;
    let mut need = offset.saturating_add(limit);
    let cap = probe_cap.max(need + 1);
    let mut upper: Option<Vec<String>> = None;
    for _ in 0..64 {
        let bound = upper
            .as_ref()
            .map_or(Expr::True, |u| Expr::lex(&order, u, false, false));
        let filter = Expr::and([spec.base.clone(), lower.clone(), within.clone(), bound]);
        let probe = rt
            .read(&ReadRequest {
                table: spec.table,
                fields: &order,
                key: spec.key,
                filter: &filter,
                rowcount: cap + 1,
            })
            .await?;
        let truncated = probe.truncated();
        let mut rows = probe.rows;
        rows.sort_by_cached_key(|r| spec.sort_key(r));
        if truncated {
            let idx = if rows.len() > need {
                need - 1
            } else {
                (rows.len() / 2).max(1) - 1
            };
            upper = rows.get(idx).map(|r| spec.sort_key(r));
            continue;
        }
        // A short answer is the whole range only if the system does not cap answers
        // silently. Until a cap is known, check it once a probe, both halves around the
        // probe's middle row: an honest system serves exactly the probe's rows of each
        // half; a capping one serves more in a half where the probe missed rows. One half
        // alone has a blind side (a lower-half check passes for a system answering in key
        // order, an upper-half one for rows missed only below the middle).
        if rt.row_cap().is_none() && rows.len() >= 2 {
            let mid = (rows.len() - 1) / 2;
            let middle = spec.sort_key(&rows[mid]);
            let halves = [
                (Expr::lex(&order, &middle, false, false), mid + 1),
                (Expr::lex(&order, &middle, true, true), rows.len() - mid - 1),
            ];
            let mut verdict = std::cmp::Ordering::Equal;
            let mut served = 0;
            for (half, expected) in halves {
                let check = rt
                    .read(&ReadRequest {
                        table: spec.table,
                        fields: &order,
                        key: spec.key,
                        filter: &Expr::and([filter.clone(), half]),
                        rowcount: rows.len() + 1,
                    })
                    .await?;
                verdict = check.rows.len().cmp(&expected);
                served = check.rows.len();
                if verdict != std::cmp::Ordering::Equal {
                    break;
                }
            }
            match verdict {
                std::cmp::Ordering::Greater => {
                    // Rows the probe did not serve. The same count again is the cap: learn
                    // it from a size no commit racing the check is likely to fake (a false
                    // cap costs smaller pages for good). Either way read the lower half
                    // next, which a small cap serves whole.
                    if served == rows.len() && rows.len() >= MIN_CAP {
                        let cap = rows.len();
                        rt.learn_row_cap(cap);
                        limit = (cap.saturating_sub(2) * 4 / 5).clamp(1, limit);
                        need = offset.saturating_add(limit);
                    }
                    upper = halfway(&rows, spec);
                    continue;
                }
                std::cmp::Ordering::Less => {
                    // Rows removed meanwhile: probe again.
                    upper = None;
                    continue;
                }
                std::cmp::Ordering::Equal => {}
            }
        }
        let selected: Vec<&RfcRow> = rows.iter().skip(offset).take(limit).collect();
        let more = rows.len() > need || upper.is_some();
        let (Some(first), Some(last)) = (selected.first(), selected.last()) else {
            return Ok(Scanned {
                rows: Vec::new(),
                more: false,
            });
        };
        // Keyset pages read from the cursor's own bound, not from the first row the probe
        // served: a row the probe did not return (a system that caps answers silently) is
        // read all the same, or found missing below.
        let from = if offset == 0 {
            lower.clone()
        } else {
            Expr::lex(&order, &spec.sort_key(first), true, false)
        };
        let range = Expr::and([
            spec.base.clone(),
            within.clone(),
            from,
            Expr::lex(&order, &spec.sort_key(last), false, false),
        ]);
        let expected = selected.len();
        let asked = expected + expected / 4 + 2;
        let data = rt
            .read(&ReadRequest {
                table: spec.table,
                fields: &spec.fields,
                key: spec.key,
                filter: &range,
                rowcount: asked,
            })
            .await?;
        if data.truncated() {
            if data.rowcount < asked {
                // The system could not hold that many whole rows (a memory dump halved
                // ROWCOUNT): read pages that fit in what it answered, or the same range
                // would be cut again on every probe.
                limit = (data.rowcount.saturating_sub(2) * 4 / 5).clamp(1, limit);
                need = offset.saturating_add(limit);
                tracing::warn!(
                    table = spec.table,
                    rows = limit,
                    "memory dump on a page of whole rows: reading smaller pages"
                );
            }
            // Many rows in the range (committed since the probe, or missed by a capped
            // probe), or a smaller page: probe again, within the lower half of the range.
            upper = halfway(&rows, spec);
            continue;
        }
        if offset == 0 && !same_rows(&selected, &data.rows, spec) {
            // The range holds other rows than the probe served (committed or removed
            // since, or a system that caps its answers silently and serves a different
            // part each time). When both reads stopped at the same count short of what
            // was asked, that count is the system's cap: learn it (later reads ask at
            // most that, so a full answer reads as cut) and read pages that fit under it.
            if data.rows.len() == rows.len() && data.rows.len() < asked && rows.len() >= MIN_CAP {
                let cap = data.rows.len();
                rt.learn_row_cap(cap);
                limit = (cap.saturating_sub(2) * 4 / 5).clamp(1, limit);
                need = offset.saturating_add(limit);
            }
            upper = halfway(&rows, spec);
            continue;
        }
        let mut data = data.rows;
        data.sort_by_cached_key(|r| spec.sort_key(r));
        let more = more || data.len() > limit;
        data.truncate(limit);
        return Ok(Scanned { rows: data, more });
    }
    Err(SapEccError::decode(
        rt.system(),
        format!("{}: no complete page after 64 probes", spec.table),
    ))
}

/// The smallest answer size learned as a silent cap (below it, a count that repeats may be
/// a commit racing the check; smaller caps are read around by narrowing, unlearned).
const MIN_CAP: usize = 16;

/// The sort key of the middle row of a (sorted) probe: the upper bound of a narrower probe.
fn halfway(rows: &[RfcRow], spec: &ScanSpec) -> Option<Vec<String>> {
    rows.get(rows.len().saturating_sub(1) / 2)
        .map(|r| spec.sort_key(r))
}

/// Whether the data read served exactly the rows the probe selected (by sort key).
fn same_rows(selected: &[&RfcRow], data: &[RfcRow], spec: &ScanSpec) -> bool {
    if selected.len() != data.len() {
        return false;
    }
    let keys: std::collections::HashSet<Vec<String>> =
        selected.iter().map(|r| spec.sort_key(r)).collect();
    data.iter().all(|r| keys.contains(&spec.sort_key(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_naive_instants() {
        let berlin = parse_timezone("Europe/Berlin").expect("iana");
        let naive: Timestamp = "2026-03-29T02:30:00Z".parse().expect("t");
        // 02:30 does not exist in Berlin that day: the earlier offset applies.
        assert_eq!(
            local_to_instant(naive, &berlin).to_string(),
            "2026-03-29T01:30:00Z"
        );
        let winter: Timestamp = "2026-01-15T23:30:00Z".parse().expect("t");
        assert_eq!(
            local_to_instant(winter, &berlin).to_string(),
            "2026-01-15T22:30:00Z"
        );
        let fixed = parse_timezone("-05:00").expect("offset");
        assert_eq!(
            local_to_instant(winter, &fixed).to_string(),
            "2026-01-16T04:30:00Z"
        );
        assert!(parse_timezone("+0530").is_some());
        assert!(parse_timezone("UTC+2").is_some());
        assert!(parse_timezone("Mars/Olympus").is_none());
        assert!(parse_timezone("+25").is_none());
        assert_eq!(to_sap(winter), ("20260115".to_owned(), "233000".to_owned()));
        let now: Timestamp = "2026-01-15T23:30:00Z".parse().expect("t");
        assert_eq!(naive_now(now, &berlin).to_string(), "2026-01-16T00:30:00Z");
    }

    #[test]
    fn stamps_of_rows() {
        let spec = ScanSpec {
            table: "RBKP",
            date: "CPUDT",
            time: Some("CPUTM"),
            key: &["BELNR", "GJAHR"],
            fields: vec![],
            base: Expr::True,
        };
        let row: RfcRow = [
            ("CPUDT", "20260301"),
            ("CPUTM", "235959"),
            ("BELNR", "5100000001"),
            ("GJAHR", "2026"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            spec.naive_stamp(&row).map(|t| t.to_string()),
            Some("2026-03-01T23:59:59Z".into())
        );
        assert_eq!(spec.cursor_key(&row), "5100000001/2026");
        assert_eq!(
            spec.sort_key(&row),
            ["20260301", "235959", "5100000001", "2026"]
        );
        assert!(parse_date("00000000").is_none());
        assert!(parse_time("246000").is_none());
    }
}
