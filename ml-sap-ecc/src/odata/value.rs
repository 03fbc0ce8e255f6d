//! OData v2 JSON values and `$filter` literals: `/Date(ms)/`, `/Date(ms±NNNN)/`,
//! `datetime'...'`, Edm.Decimal / Edm.Int64 as JSON strings.

use jiff::{SignedDuration, Timestamp};
use rust_decimal::Decimal;

/// A parsed `/Date(<ms>[±<minutes>])/` value: milliseconds since the epoch (UTC) and the
/// optional offset in **minutes** (`+0060` is one hour; `+0100` is 100 minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ODataDate {
    /// Milliseconds since 1970-01-01T00:00:00Z (may be negative).
    pub millis: i64,
    /// The offset suffix in minutes, when present.
    pub offset_minutes: Option<i32>,
}

/// How the offset suffix of `/Date(ms±NNNN)/` is read (see the module docs of
/// [`crate::odata`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DateKind {
    /// `Edm.DateTime`: the offset minutes are added to the instant (as pyodata does).
    #[default]
    DateTime,
    /// `Edm.DateTimeOffset`: the milliseconds are the instant; the offset is only the zone.
    DateTimeOffset,
}

impl ODataDate {
    /// Parses `/Date(1700000000000)/`, `/Date(1700000000000+0060)/`, `/Date(-5000-0030)/`.
    /// The escaped JSON form `\/Date(...)\/` arrives here already unescaped by the JSON
    /// parser. Anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
        // The sign of the millis may be `-`; an offset sign comes after the first digit.
        let split = inner
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '+' || *c == '-')
            .map(|(i, _)| i);
        let (ms, offset) = match split {
            Some(i) => (&inner[..i], Some(&inner[i..])),
            None => (inner, None),
        };
        if !is_signed_digits(ms) || ms.len() > 20 {
            return None;
        }
        let millis: i64 = ms.parse().ok()?;
        let offset_minutes = match offset {
            None => None,
            Some(o) => {
                let digits = &o[1..];
                if digits.is_empty()
                    || digits.len() > 4
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let m: i32 = digits.parse().ok()?;
                Some(if o.starts_with('-') { -m } else { m })
            }
        };
        Some(Self {
            millis,
            offset_minutes,
        })
    }

    /// The instant this value stands for.
    pub fn instant(self, kind: DateKind) -> Option<Timestamp> {
        let base = Timestamp::from_millisecond(self.millis).ok()?;
        match (kind, self.offset_minutes) {
            (DateKind::DateTime, Some(m)) => base
                .checked_add(SignedDuration::from_mins(i64::from(m)))
                .ok(),
            _ => Some(base),
        }
    }

    /// Formats `/Date(<ms>)/` for a UTC instant (milliseconds, truncated).
    pub fn format(t: Timestamp) -> String {
        format!("/Date({})/", t.as_millisecond())
    }
}

fn is_signed_digits(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// The `$filter` literal of an instant: `datetime'2024-01-01T00:00:00'` for `Edm.DateTime`
/// (UTC wall time, milliseconds only when non-zero), `datetimeoffset'2024-01-01T00:00:00Z'`
/// for `Edm.DateTimeOffset`.
pub fn filter_literal(t: Timestamp, kind: DateKind) -> String {
    let dt = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let ms = t.subsec_nanosecond() / 1_000_000;
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let text = if ms == 0 {
        base
    } else {
        format!("{base}.{ms:03}")
    };
    match kind {
        DateKind::DateTime => format!("datetime'{text}'"),
        DateKind::DateTimeOffset => format!("datetimeoffset'{text}Z'"),
    }
}

/// A string literal for `$filter`: single-quoted, `'` doubled.
pub fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads an Edm.Decimal sent as a JSON string (`"1234.50"`, `"-0.01"`) exactly. A JSON
/// number is accepted from its exact text too (some services send them); anything else is
/// `None`.
pub fn decimal(raw: &serde_json::value::RawValue) -> Option<Decimal> {
    let text = raw.get().trim();
    let inner = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(s) => s.trim(),
        None => text,
    };
    if inner.is_empty() || inner.len() > 40 || inner.contains(['e', 'E']) {
        return None;
    }
    inner.parse::<Decimal>().ok()
}

/// Reads an Edm.Int64 sent as a JSON string (`"42"`); a JSON integer is accepted too.
pub fn int64(raw: &serde_json::value::RawValue) -> Option<i64> {
    let text = raw.get().trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if !is_signed_digits(inner) {
        return None;
    }
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_with_and_without_offsets() {
        let d = ODataDate::parse("/Date(1700000000000)/").expect("plain");
        assert_eq!(d.millis, 1_700_000_000_000);
        assert_eq!(d.offset_minutes, None);
        assert_eq!(
            d.instant(DateKind::DateTime).expect("t").to_string(),
            "2023-11-14T22:13:20Z"
        );
        let d = ODataDate::parse("/Date(1700000000000+0060)/").expect("offset");
        assert_eq!(d.offset_minutes, Some(60));
        // DateTime: pyodata adds the minutes; DateTimeOffset: the millis are the instant.
        assert_eq!(
            d.instant(DateKind::DateTime).expect("t").to_string(),
            "2023-11-14T23:13:20Z"
        );
        assert_eq!(
            d.instant(DateKind::DateTimeOffset).expect("t").to_string(),
            "2023-11-14T22:13:20Z"
        );
        // `+0100` is one hundred minutes, not one hour.
        let d = ODataDate::parse("/Date(0+0100)/").expect("minutes");
        assert_eq!(
            d.instant(DateKind::DateTime).expect("t").to_string(),
            "1970-01-01T01:40:00Z"
        );
        let d = ODataDate::parse("/Date(-86400000-0030)/").expect("negative");
        assert_eq!(d.millis, -86_400_000);
        assert_eq!(d.offset_minutes, Some(-30));
        for bad in [
            "",
            "/Date()/",
            "/Date(abc)/",
            "Date(1)",
            "/Date(1+)/",
            "/Date(1+00600)/",
            "/Date(99999999999999999999999)/",
            "2024-01-01",
        ] {
            assert_eq!(ODataDate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn filter_literals() {
        let t: Timestamp = "2024-01-02T03:04:05Z".parse().expect("t");
        assert_eq!(
            filter_literal(t, DateKind::DateTime),
            "datetime'2024-01-02T03:04:05'"
        );
        let t: Timestamp = "2024-01-02T03:04:05.120Z".parse().expect("t");
        assert_eq!(
            filter_literal(t, DateKind::DateTime),
            "datetime'2024-01-02T03:04:05.120'"
        );
        assert_eq!(
            filter_literal(t, DateKind::DateTimeOffset),
            "datetimeoffset'2024-01-02T03:04:05.120Z'"
        );
        assert_eq!(string_literal("O'Brien"), "'O''Brien'");
    }

    #[test]
    fn decimals_and_int64_keep_every_digit() {
        let raw = |s: &str| serde_json::value::RawValue::from_string(s.to_owned()).expect("raw");
        assert_eq!(
            decimal(&raw("\"98765432109876.54\"")).map(|d| d.to_string()),
            Some("98765432109876.54".into())
        );
        assert_eq!(
            decimal(&raw("-12.30")).map(|d| d.to_string()),
            Some("-12.30".into())
        );
        assert_eq!(decimal(&raw("\"1e5\"")), None);
        assert_eq!(decimal(&raw("\"abc\"")), None);
        assert_eq!(decimal(&raw("null")), None);
        assert_eq!(
            int64(&raw("\"9007199254740993\"")),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(int64(&raw("\"4.5\"")), None);
    }
}
